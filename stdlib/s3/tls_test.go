package s3

import (
	"context"
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

	"github.com/minio/minio-go/v7"

	"pipe.dev/pipe/stdlib"
)

// TestSinkTLS writes through a server speaking TLS with a certificate of
// a CA of the test's own: the sink verifies it with tls { ca }, and fails
// without the CA.
func TestSinkTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := selfSigned(t, dir)
	gw := startGateway(t, "--cert", certFile, "--key", keyFile)
	// The bucket, made over TLS by the sink's own client.
	attrs := map[string]any{"endpoint": "https://" + gw.addr, "bucket": "tls-bucket", "access_key": testAccessKey,
		"secret_key": testSecretKey, "path_style": true, "retry_timeout": time.Duration(0),
		"tls": map[string]any{"ca": caPEM}}
	cfg := config(t, SinkSpec, attrs)
	s, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.c.cli.MakeBucket(t.Context(), "tls-bucket", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), recs(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.cli.StatObject(t.Context(), "tls-bucket", "in.p0.0000000001-0000000003.jsonl", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the object written over TLS: %v", err)
	}

	// Without the CA the certificate is refused at once.
	delete(attrs, "tls")
	s2, err := newSink(config(t, SinkSpec, attrs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s2.Open(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Open without the CA = %v, want a certificate error", err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 signed by a new CA and
// its key, and returns the CA's PEM and both file names.
func selfSigned(t *testing.T, dir string) (caPEM, certFile, keyFile string) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pipe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), certFile, keyFile
}
