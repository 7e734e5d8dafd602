package monitor

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/internal/testkit"
)

// TestTLS serves HTTPS with a certificate and key from files.
func TestTLS(t *testing.T) {
	ca := testkit.NewCA(t, "pipe test")
	certFile, keyFile := ca.Server(t).Write(t, t.TempDir(), "server")

	srv, err := Listen(Options{Addr: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile}, exec.NewHandle(), &plan.Plan{Version: 1, Pipeline: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(t.Context())
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %s", srv.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	res, err := client.Get(srv.URL() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.TLS == nil {
		t.Fatalf("GET /ready over TLS before the run: %d (TLS %v)", res.StatusCode, res.TLS != nil)
	}
	if res, err := http.Get("http://" + srv.Addr() + "/ready"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP to the HTTPS server: %d", res.StatusCode)
		}
	}
}
