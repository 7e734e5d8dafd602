// Package tlsconf builds the crypto/tls configuration of a connector's
// tls block: ca, cert and key (each a PEM file path or PEM text), and for
// a client server_name and insecure_skip_verify.
//
// Role: a run-time helper of the connector packages (kafka, http); the
// compiler sees only their tls params.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"pipe.dev/pipe/stdlib"
)

// PEMOrFile returns v itself when it holds PEM text, else the file it names.
func PEMOrFile(v string) ([]byte, error) {
	if strings.Contains(v, "-----BEGIN") {
		return []byte(v), nil
	}
	return os.ReadFile(v)
}

// Client returns the configuration of a client's tls block: ca verifies
// the server (the system's roots without it), cert and key are the
// client certificate of mutual TLS.
func Client(t stdlib.Config) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.String("server_name"),
		InsecureSkipVerify: t.Bool("insecure_skip_verify"),
	}
	pool, certs, err := load(t)
	if err != nil {
		return nil, err
	}
	tc.RootCAs, tc.Certificates = pool, certs
	return tc, nil
}

// Server returns the configuration of a server's tls block: cert and key
// (required) are the server's; with ca, clients must present a
// certificate it signed.
func Server(t stdlib.Config) (*tls.Config, error) {
	pool, certs, err := load(t)
	if err != nil {
		return nil, err
	}
	if certs == nil {
		return nil, errors.New("a server needs cert and key")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
	if pool != nil {
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// load reads ca (nil without it) and the cert and key pair (nil without
// them).
func load(t stdlib.Config) (*x509.CertPool, []tls.Certificate, error) {
	var pool *x509.CertPool
	if ca := t.String("ca"); ca != "" {
		b, err := PEMOrFile(ca)
		if err != nil {
			return nil, nil, fmt.Errorf("ca: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, errors.New("ca: no PEM certificate found")
		}
	}
	cert, key := t.String("cert"), t.String("key")
	if (cert == "") != (key == "") {
		return nil, nil, errors.New("cert and key must be set together")
	}
	if cert == "" {
		return pool, nil, nil
	}
	cb, err := PEMOrFile(cert)
	if err != nil {
		return nil, nil, fmt.Errorf("cert: %w", err)
	}
	kb, err := PEMOrFile(key)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	pair, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return nil, nil, fmt.Errorf("cert and key: %w", err)
	}
	return pool, []tls.Certificate{pair}, nil
}
