// Package tlsconf is the tls block the connectors share: its attributes
// ([Param]), their check ([Check]), and the configuration they give a
// client ([Client]) or a server ([Server]).
//
// Role: a run-time helper of the connector packages; the compiler sees
// only [Param] (or a connector's own block of the same attributes).
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

// Param is the tls attribute of a client: a block whose presence turns
// TLS on.
var Param = stdlib.Param{Name: "tls", Type: stdlib.Block(
	stdlib.Param{Name: "ca", Type: stdlib.String, Doc: "CA certificates: a PEM file path or PEM text"},
	stdlib.Param{Name: "cert", Type: stdlib.String, Doc: "client certificate: a PEM file path or PEM text"},
	stdlib.Param{Name: "key", Type: stdlib.String, Secret: true, Doc: "client key: a PEM file path or PEM text"},
	stdlib.Param{Name: "server_name", Type: stdlib.String, Doc: "name to verify the server certificate against (default: the host connected to)"},
	stdlib.Param{Name: "insecure_skip_verify", Type: stdlib.Bool, Default: false, Doc: "do not verify the server certificate (unsafe)"},
), Doc: "connect with TLS"}

// Check reports a client certificate without its key or a key without
// its certificate.
func Check(attrs map[string]any) []stdlib.AttrError {
	t, ok := attrs[Param.Name].(map[string]any)
	if !ok {
		return nil
	}
	_, c := t["cert"]
	_, k := t["key"]
	if c != k {
		return []stdlib.AttrError{{Attr: "tls.cert", Message: "tls cert and key must be set together"}}
	}
	return nil
}

// PEMOrFile returns v itself when it holds PEM text, else the file it names.
func PEMOrFile(v string) ([]byte, error) {
	if strings.Contains(v, "-----BEGIN") {
		return []byte(v), nil
	}
	return os.ReadFile(v)
}

// Client returns the configuration of a client's checked tls block (the
// Config of cfg.Block("tls")): ca verifies the server (the system's roots
// without it), cert and key are the client certificate of mutual TLS.
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
	// The key and what it holds may be secret: errors do not show them.
	kb, err := PEMOrFile(key)
	if err != nil {
		return nil, nil, errors.New("key: cannot read it")
	}
	pair, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return nil, nil, errors.New("cert and key: not a matching PEM certificate and key")
	}
	return pool, []tls.Certificate{pair}, nil
}
