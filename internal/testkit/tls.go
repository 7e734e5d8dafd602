// Package testkit holds what the tests of several packages share: a
// certificate authority of a test's own and the certificates it issues.
// Only tests import it.
package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Cert is a certificate with its key: a CA's (NewCA) or one a CA issued
// (Issue).
type Cert struct {
	X509    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM string // the certificate, PEM encoded
	KeyPEM  string // its key, PEM encoded (EC PRIVATE KEY)
}

var serial atomic.Int64

// NewCA returns a new self-signed certificate authority, valid for an
// hour either side of now.
func NewCA(t testing.TB, name string) *Cert {
	t.Helper()
	return sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: name},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil)
}

// Server returns a server certificate issued by ca for 127.0.0.1 and the
// names given.
func (ca *Cert) Server(t testing.TB, names ...string) *Cert {
	t.Helper()
	return sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca)
}

// Client returns a client certificate issued by ca, its common name name.
func (ca *Cert) Client(t testing.TB, name string) *Cert {
	t.Helper()
	return sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: name},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca)
}

// sign completes tmpl (serial number, validity), signs it with parent's
// key (tmpl's own when parent is nil) and returns it with a new key.
func sign(t testing.TB, tmpl *x509.Certificate, parent *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.X509, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{X509: cert, Key: key,
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))}
}

// Write writes the certificate and its key into dir as name.crt and
// name.key, and returns both paths.
func (c *Cert) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for file, data := range map[string]string{certFile: c.CertPEM, keyFile: c.KeyPEM} {
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// Pair returns the certificate and key for a tls.Config.
func (c *Cert) Pair(t testing.TB) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair([]byte(c.CertPEM), []byte(c.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// Pool returns a pool holding the certificate (a CA to trust).
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.X509)
	return p
}
