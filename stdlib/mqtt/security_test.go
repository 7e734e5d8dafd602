package mqtt

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// tlsBroker starts a Mosquitto of the test's own on a free port with a TLS
// listener (a certificate for 127.0.0.1 signed by a CA made here) that
// takes only user "pipe" with password, and returns its address and the
// CA certificate's PEM file.
func tlsBroker(t *testing.T, password string) (addr, ca string) {
	t.Helper()
	bin, err := osexec.LookPath("mosquitto")
	if err != nil {
		testkit.Missing(t, "mosquitto is not installed")
	}
	dir := t.TempDir()
	caCert := testkit.NewCA(t, "pipe test CA")
	ca, _ = caCert.Write(t, dir, "ca")
	cert, key := caCert.Server(t).Write(t, dir, "server")
	pw := filepath.Join(dir, "passwords")
	if err := os.WriteFile(pw, []byte("pipe:"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := osexec.Command("mosquitto_passwd", "-U", pw).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	port := testkit.FreePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf("user root\npersistence false\nlistener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nallow_anonymous false\npassword_file %s\n",
		port, ca, cert, key, pw)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(bin, "-c", conf)
	cmd.Stderr = &proctest.LogWriter{T: t, Prefix: "mosquitto: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr = "127.0.0.1:" + strconv.Itoa(port)
	if err := testkit.Await(5*time.Second, testkit.Dialable(addr)); err != nil {
		t.Fatalf("mosquitto with TLS did not start: %v", err)
	}
	return addr, ca
}

// TestTLSAndCredentials: source and sink reach a broker over TLS, verified
// against the CA given, with user name and password; a wrong password and
// a CA that did not sign the broker's certificate fail at Open without
// retrying until retry_timeout, and the password shows in no error.
func TestTLSAndCredentials(t *testing.T) {
	const password = "s3cr3t-pw-7781"
	addr, ca := tlsBroker(t, password)
	attrs := func(extra map[string]any) map[string]any {
		a := map[string]any{"brokers": []any{"ssl://" + addr}, "username": "pipe", "password": password,
			"tls": map[string]any{"ca": ca}, "retry_timeout": time.Minute}
		for k, v := range extra {
			a[k] = v
		}
		return a
	}
	topic, id := uniq("pipe-tls"), uniq("pipe-tls")
	src, err := newSource(config(t, SourceSpec, "in", attrs(map[string]any{"topic": topic, "client_id": id})))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close(t.Context())
	snk, err := newSink(config(t, SinkSpec, "out", attrs(map[string]any{"topic": topic})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snk.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer snk.Close(t.Context())
	if err := snk.Write(t.Context(), []stdlib.Record{{Value: map[string]any{"n": int64(1)}}, {Value: map[string]any{"n": int64(2)}}}); err != nil {
		t.Fatal(err)
	}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if got := values(stdlibtest.ReadN(t, src, 2, 10*time.Second)); !slices.Equal(got, []string{`{"n":1}`, `{"n":2}`}) {
		t.Fatalf("read %q over TLS", got)
	}

	for name, extra := range map[string]map[string]any{
		"wrong password": {"password": "not-" + password},
		"no credentials": {"username": nil, "password": nil},
		"unknown CA":     {"tls": map[string]any{}},
	} {
		t.Run(name, func(t *testing.T) {
			a := attrs(map[string]any{"topic": "t"})
			for k, v := range extra {
				if v == nil {
					delete(a, k)
				} else {
					a[k] = v
				}
			}
			s, err := newSink(config(t, SinkSpec, "out", a))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = s.Open(t.Context())
			if err == nil {
				s.Close(t.Context())
				t.Fatal("Open succeeded")
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("Open failed after %v: it retried what cannot pass (%v)", d, err)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the password shows in %v", err)
			}
			t.Logf("%v", err)
		})
	}
}
