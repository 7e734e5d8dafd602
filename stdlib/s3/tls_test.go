package s3

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
)

// TestSinkTLS writes through a server speaking TLS with a certificate of
// a CA of the test's own: the sink verifies it with tls { ca }, and fails
// without the CA.
func TestSinkTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "pipe test CA")
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	gw := startGateway(t, "--cert", certFile, "--key", keyFile)
	// The bucket, made over TLS by the sink's own client.
	attrs := map[string]any{"endpoint": "https://" + gw.addr, "bucket": "tls-bucket", "access_key": testAccessKey,
		"secret_key": testSecretKey, "path_style": true, "retry_timeout": time.Duration(0),
		"tls": map[string]any{"ca": ca.CertPEM}}
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
