// Package tlsconf is the tls block of the connectors that connect to a
// server (kafka, mysql, nats, rabbitmq): its attributes, their check, and the
// crypto/tls configuration they make.
//
// Role: shared by connector packages; the compiler sees only [Param].
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

// Param is the tls block; doc says what it does for the connector.
func Param(doc string) stdlib.Param {
	return stdlib.Param{Name: "tls", Type: stdlib.Block(
		stdlib.Param{Name: "ca", Type: stdlib.String, Doc: "CA certificates: a PEM file path or PEM text"},
		stdlib.Param{Name: "cert", Type: stdlib.String, Doc: "client certificate: a PEM file path or PEM text"},
		stdlib.Param{Name: "key", Type: stdlib.String, Secret: true, Doc: "client key: a PEM file path or PEM text"},
		stdlib.Param{Name: "server_name", Type: stdlib.String, Doc: "name to verify the server certificate against (default: the host connected to)"},
		stdlib.Param{Name: "insecure_skip_verify", Type: stdlib.Bool, Default: false, Doc: "do not verify the server certificate (unsafe)"},
	), Doc: doc}
}

// Check reports a client certificate without its key or the reverse.
func Check(attrs map[string]any) []stdlib.AttrError {
	t, ok := attrs["tls"].(map[string]any)
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

// pemOrFile returns v itself when it holds PEM text, else the file it names.
func pemOrFile(v string) ([]byte, error) {
	if strings.Contains(v, "-----BEGIN") {
		return []byte(v), nil
	}
	return os.ReadFile(v)
}

// Config returns the TLS configuration of a checked tls block.
func Config(t stdlib.Config) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.String("server_name"),
		InsecureSkipVerify: t.Bool("insecure_skip_verify"),
	}
	if ca := t.String("ca"); ca != "" {
		b, err := pemOrFile(ca)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, errors.New("ca: no PEM certificate found")
		}
		tc.RootCAs = pool
	}
	cert, key := t.String("cert"), t.String("key")
	if (cert == "") != (key == "") {
		return nil, errors.New("cert and key must be set together")
	}
	if cert != "" {
		cb, err := pemOrFile(cert)
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		kb, err := pemOrFile(key)
		if err != nil {
			return nil, errors.New("key: cannot read it") // the key is a secret: say nothing of it
		}
		pair, err := tls.X509KeyPair(cb, kb)
		if err != nil {
			return nil, errors.New("cert and key: not a matching PEM certificate and key")
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
