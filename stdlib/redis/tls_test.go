package redis

import (
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// TestTLS writes through a redis-server that speaks TLS only, verifying
// its certificate against the CA given; without tls, or with another CA,
// the sink fails to connect.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "pipe test CA")
	caFile, _ := ca.Write(t, dir, "ca")
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "server")
	otherFile, _ := testkit.NewCA(t, "other CA").Write(t, dir, "other")
	srv := startServer(t, true, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no")

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
	if err := open(map[string]any{"tls": map[string]any{"ca": ca.CertPEM}}); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	tc, err := tlsconf.Client(stdlib.Config{Attrs: map[string]any{"ca": caFile}})
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
	err = open(map[string]any{"tls": map[string]any{"ca": otherFile}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("with another CA: %v", err)
	}
}
