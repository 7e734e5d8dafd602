package redis

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// writeCert writes a PEM certificate signed by parent (self-signed when
// nil) and its key into dir, and returns both.
func writeCert(t *testing.T, dir, name string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         ca, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if !ca {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// TestTLS writes through a redis-server that speaks TLS only, verifying
// its certificate against the CA given; without tls, or with another CA,
// the sink fails to connect.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", true, nil, nil)
	writeCert(t, dir, "server", false, ca, caKey)
	writeCert(t, dir, "other", true, nil, nil)
	srv := startServer(t, true, "--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"), "--tls-auth-clients", "no")
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))

	open := func(attrs map[string]any) error {
		attrs["addr"], attrs["key"], attrs["retry_timeout"] = srv.addr, "tls:k", "0s"
		s, err := newSink(config(t, SinkSpec, "out", attrs))
		if err != nil {
			return err
		}
		defer s.Close(t.Context())
		if _, err := s.Open(t.Context()); err != nil {
			return err
		}
		return s.Write(t.Context(), []stdlib.Record{rec("in", "p", 1, map[string]any{"over": "tls"})})
	}
	if err := open(map[string]any{"tls": map[string]any{"ca": string(caPEM)}}); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	tc, err := tlsconf.Client(stdlib.Config{Attrs: map[string]any{"ca": filepath.Join(dir, "ca.crt")}})
	if err != nil {
		t.Fatal(err)
	}
	cl := goredis.NewClient(&goredis.Options{Addr: srv.addr, TLSConfig: tc})
	defer cl.Close()
	if got := cl.Get(t.Context(), "tls:k").Val(); got != `{"over":"tls"}` {
		t.Fatalf("the server holds %q", got)
	}
	if err := open(map[string]any{}); err == nil {
		t.Fatal("connected to a TLS port without TLS")
	}
	err = open(map[string]any{"tls": map[string]any{"ca": filepath.Join(dir, "other.crt")}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("with another CA: %v", err)
	}
}
