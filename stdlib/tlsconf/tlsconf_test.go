package tlsconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
)

func config(t *testing.T, attrs map[string]any) stdlib.Config {
	t.Helper()
	spec := &stdlib.Spec{Params: []stdlib.Param{Param}}
	vals, err := spec.Values(map[string]any{"tls": attrs})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := stdlib.Config{Attrs: vals}.Block("tls")
	return b
}

// TestConfig builds configurations from PEM text and files, and checks
// that a bad key says nothing of the key.
func TestClient(t *testing.T) {
	ca := testkit.NewCA(t, "test")
	cert, key := ca.CertPEM, ca.KeyPEM
	dir := t.TempDir()
	certFile := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(certFile, []byte(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := Client(config(t, map[string]any{"ca": certFile, "cert": cert, "key": key, "server_name": "h"}))
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "h" || tc.InsecureSkipVerify {
		t.Fatalf("Config: %+v, %v", tc, err)
	}
	if _, err := Client(config(t, map[string]any{"ca": "-----BEGIN nothing"})); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA: %v", err)
	}
	const secret = "-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END EC PRIVATE KEY-----\n"
	if _, err := Client(config(t, map[string]any{"cert": cert, "key": secret})); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("bad key: %v", err)
	}
	if _, err := Client(config(t, map[string]any{"cert": cert, "key": "/no/such/key-file"})); err == nil || strings.Contains(err.Error(), "key-file") {
		t.Errorf("missing key file: %v", err)
	}
	if errs := Check(map[string]any{"tls": map[string]any{"cert": cert}}); len(errs) != 1 || errs[0].Attr != "tls.cert" {
		t.Errorf("Check of a cert without key: %v", errs)
	}
	if errs := Check(map[string]any{"tls": map[string]any{"cert": cert, "key": key}}); len(errs) != 0 {
		t.Errorf("Check: %v", errs)
	}
}
