package httpconn

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// newServerFor builds and opens an http_server source on a free port with
// attrs (listen is added) and resume, keeping its state in dir.
func newServerFor(t *testing.T, dir string, attrs map[string]any, resume stdlib.Resumer) *server {
	t.Helper()
	a := map[string]any{"listen": "127.0.0.1:0", "path": "/in"}
	for k, v := range attrs {
		a[k] = v
	}
	vals, err := ServerSourceSpec.Values(a)
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkServer(vals); len(errs) > 0 {
		t.Fatal(errs)
	}
	return stdlibtest.OpenSource[*server](t, resume)(newServer(stdlib.Config{Pipeline: "p", Stage: "in", Attrs: vals, Task: 0, Tasks: 1, StateDir: dir}))
}

type answer struct {
	status int
	body   map[string]any
	header http.Header
}

// send posts body to the server with the headers given (key: value
// pairs) and returns the answer on a channel.
func send(s *server, method, body string, headers ...string) chan answer {
	ch := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(method, "http://"+s.Addr()+"/in", strings.NewReader(body))
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- answer{status: -1, body: map[string]any{"error": err.Error()}}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		ch <- answer{status: resp.StatusCode, body: m, header: resp.Header}
	}()
	return ch
}

// readAll reads until n records came or the deadline passed.
func readAll(t *testing.T, s *server, n int) []stdlib.Record {
	return stdlibtest.ReadExactly(t, s, n, 5*time.Second)
}

func noAnswer(t *testing.T, ch chan answer, what string) {
	t.Helper()
	select {
	case a := <-ch:
		t.Fatalf("%s: answered %d %v before its records were committed", what, a.status, a.body)
	case <-time.After(200 * time.Millisecond):
	}
}

func wait(t *testing.T, ch chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
	return answer{}
}

// TestServerAnswersAfterCommit: a request is answered only once Commit
// covers its last record, with the offsets it got; records carry the
// key, the kept headers and their positions.
func TestHTTPServerAnswersAfterCommit(t *testing.T) {
	s := newServerFor(t, t.TempDir(), map[string]any{"format": stdlib.Ident("ndjson"), "headers": []any{"X-Event"}}, stdlib.ResumeMap{})
	ch := send(s, "POST", "{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n", "Idempotency-Key", "k1", "X-Event", "push")
	recs := readAll(t, s, 3)
	for i, r := range recs {
		if r.Pos.Partition != "/in" || r.Pos.Offset != int64(i+1) || r.Key != "k1" || r.Value.(map[string]any)["a"] != int64(i+1) {
			t.Errorf("record %d: %+v", i, r)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "X-Event" || string(r.Headers[0].Value) != "push" {
			t.Errorf("record %d headers: %v", i, r.Headers)
		}
	}
	noAnswer(t, ch, "before commit")
	s.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: "/in", Offset: 2}})
	noAnswer(t, ch, "commit short of its last record")
	s.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: "/in", Offset: 3}})
	a := wait(t, ch)
	if a.status != 200 || a.body["first_offset"] != 1.0 || a.body["last_offset"] != 3.0 {
		t.Fatalf("answer %d %v", a.status, a.body)
	}
	// The same key again: answered at once, nothing handed on.
	a = wait(t, send(s, "POST", "{\"a\":1}\n", "Idempotency-Key", "k1"))
	if a.status != 200 || a.body["duplicate"] != true || a.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %v", a.status, a.body)
	}
	if recs, _ := s.Read(t.Context()); len(recs) != 0 {
		t.Fatalf("a repeated key handed on %d records", len(recs))
	}
}

// TestServerKeysSurviveRestart: after a restart, a key whose records the
// stored positions cover is answered as a duplicate; a key whose records
// were not covered (lost with the process) is taken again, at offsets
// never given before.
func TestHTTPServerKeysSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := newServerFor(t, dir, nil, stdlib.ResumeMap{})
	c1 := send(s, "POST", `{"n":1}`, "Idempotency-Key", "done")
	readAll(t, s, 1)
	s.Commit(t.Context(), []stdlib.Position{{Partition: "/in", Offset: 1}})
	if a := wait(t, c1); a.status != 200 {
		t.Fatalf("first: %d", a.status)
	}
	c2 := send(s, "POST", `[{"n":2},{"n":3}]`, "Idempotency-Key", "lost")
	readAll(t, s, 2) // handed on, never committed: the process dies
	s.Close(context.Background())
	if a := wait(t, c2); a.status != 503 {
		t.Fatalf("request cut by the stop: %d %v", a.status, a.body)
	}

	s2 := newServerFor(t, dir, nil, stdlib.ResumeMap{"/in": 1})
	if s2.identity != s.identity || s2.identity == "" {
		t.Fatalf("identity %q after restart, was %q", s2.identity, s.identity)
	}
	if a := wait(t, send(s2, "POST", `{"n":1}`, "Idempotency-Key", "done")); a.status != 200 || a.body["duplicate"] != true {
		t.Fatalf("committed key after restart: %d %v", a.status, a.body)
	}
	c3 := send(s2, "POST", `[{"n":2},{"n":3}]`, "Idempotency-Key", "lost")
	recs := readAll(t, s2, 2)
	if recs[0].Pos.Offset != 4 {
		t.Errorf("retried request at offset %d, want 4 (after every offset given before)", recs[0].Pos.Offset)
	}
	s2.Commit(t.Context(), []stdlib.Position{{Partition: "/in", Offset: 5}})
	if a := wait(t, c3); a.status != 200 {
		t.Fatalf("retried lost request: %d %v", a.status, a.body)
	}
}

// TestServerRefusals: 405, 401, 404, 413, 400 with the line and byte of a
// malformed record, and 429 under backpressure.
func TestHTTPServerRefusals(t *testing.T) {
	s := newServerFor(t, t.TempDir(), map[string]any{"format": stdlib.Ident("ndjson"), "max_body_size": int64(64),
		"max_pending": int64(1), "bearer_token": "tok"}, stdlib.ResumeMap{})
	auth := []string{"Authorization", "Bearer tok"}
	if a := wait(t, send(s, "GET", "", auth...)); a.status != 405 {
		t.Errorf("GET: %d", a.status)
	}
	if a := wait(t, send(s, "POST", `{"a":1}`)); a.status != 401 {
		t.Errorf("no token: %d", a.status)
	}
	if a := wait(t, send(s, "POST", `{"a":1}`, "Authorization", "Bearer nope")); a.status != 401 {
		t.Errorf("wrong token: %d", a.status)
	}
	if a := wait(t, send(s, "POST", strings.Repeat(" ", 65)+`{"a":1}`, auth...)); a.status != 413 {
		t.Errorf("oversize: %d", a.status)
	}
	a := wait(t, send(s, "POST", "{\"a\":1}\n{\"a\":\n", auth...))
	if a.status != 400 || a.body["line"] != 2.0 || a.body["byte"] != 8.0 {
		t.Errorf("malformed: %d %v", a.status, a.body)
	}
	// One request pending fills max_pending: the next is told to come back.
	first := send(s, "POST", `{"a":1}`, auth...)
	time.Sleep(100 * time.Millisecond)
	a = wait(t, send(s, "POST", `{"a":2}`, auth...))
	if a.status != 429 || a.header.Get("Retry-After") == "" {
		t.Errorf("backpressure: %d %v", a.status, a.header)
	}
	readAll(t, s, 1)
	s.Commit(t.Context(), []stdlib.Position{{Partition: "/in", Offset: 1}})
	if a := wait(t, first); a.status != 200 {
		t.Errorf("first: %d", a.status)
	}
}

// TestServerMalformedOnError: with malformed = on_error a bad record comes
// with Err (the stage's on_error takes it), naming its line and byte; the
// request's good records go on.
func TestHTTPServerMalformedOnError(t *testing.T) {
	s := newServerFor(t, t.TempDir(), map[string]any{"format": stdlib.Ident("json"), "malformed": stdlib.Ident("on_error")}, stdlib.ResumeMap{})
	ch := send(s, "POST", "[{\"a\":1},\n \"x\",\n {\"a\":3}]")
	recs := readAll(t, s, 3)
	if recs[0].Err != nil || recs[2].Err != nil || recs[1].Err == nil || !strings.Contains(recs[1].Err.Error(), "line 2 (byte 11)") {
		t.Fatalf("records: %v / %v / %v", recs[0].Err, recs[1].Err, recs[2].Err)
	}
	s.Commit(t.Context(), []stdlib.Position{{Partition: "/in", Offset: 3}})
	if a := wait(t, ch); a.status != 200 {
		t.Fatalf("answer %d", a.status)
	}
}

// TestServerTwinWaits: a retry arriving while the first request with its
// key is still on its way waits for it and hands nothing on.
func TestHTTPServerTwinWaits(t *testing.T) {
	s := newServerFor(t, t.TempDir(), nil, stdlib.ResumeMap{})
	first := send(s, "POST", `{"a":1}`, "Idempotency-Key", "k")
	readAll(t, s, 1)
	twin := send(s, "POST", `{"a":1}`, "Idempotency-Key", "k")
	noAnswer(t, twin, "twin")
	if recs, _ := s.Read(t.Context()); len(recs) != 0 {
		t.Fatalf("the twin handed on %d records", len(recs))
	}
	s.Commit(t.Context(), []stdlib.Position{{Partition: "/in", Offset: 1}})
	for _, ch := range []chan answer{first, twin} {
		if a := wait(t, ch); a.status != 200 {
			t.Fatalf("answer %d", a.status)
		}
	}
}

// TestServerLogCutShort: a last log line cut by a crash is ignored.
func TestHTTPServerLogCutShort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "http_server.in.log")
	os.WriteFile(path, []byte("{\"identity\":\"abc\",\"high\":3}\n{\"e\":5,\"k\":\"a\",\"t\":"+fmt.Sprint(time.Now().Unix())+"}\n{\"e\":9,\"k\":\"b"), 0o644)
	s := newServerFor(t, dir, nil, stdlib.ResumeMap{"/in": 5})
	if s.identity != "abc" || s.next != 6 {
		t.Fatalf("identity %q next %d", s.identity, s.next)
	}
	if _, ok := s.done["a"]; !ok {
		t.Fatal("key a lost")
	}
}

func TestHTTPServerCheck(t *testing.T) {
	for _, c := range []struct {
		attrs map[string]any
		want  string
	}{
		{map[string]any{"listen": "8080"}, "not host:port"},
		{map[string]any{"listen": ":99999"}, "port"},
		{map[string]any{"listen": ":80", "methods": []any{"GET"}}, "takes no body"},
		{map[string]any{"listen": ":80", "status": int64(302)}, "from 200 to 299"},
		{map[string]any{"listen": ":80", "path": "in"}, "must start with /"},
		{map[string]any{"listen": ":80", "bearer_token": "x", "basic_auth": map[string]any{"username": "u", "password": "p"}}, "exclude"},
	} {
		vals, err := ServerSourceSpec.Values(c.attrs)
		if err != nil {
			t.Fatal(err)
		}
		errs := checkServer(vals)
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), c.want) {
			t.Errorf("%v: %v, want %q", c.attrs, errs, c.want)
		}
	}
	vals, _ := ServerSourceSpec.Values(map[string]any{"listen": "127.0.0.1:8080"})
	if errs := checkServer(vals); len(errs) > 0 {
		t.Errorf("good attributes: %v", errs)
	}
}

// TestHTTPServerMTLS: with tls { cert, key, ca } the server speaks TLS and
// takes only clients presenting a certificate the ca signed.
func TestHTTPServerMTLS(t *testing.T) {
	ca := testkit.NewCA(t, "test ca")
	srv, clientCert := ca.Server(t), ca.Client(t, "client").Pair(t)
	s := newServerFor(t, t.TempDir(), map[string]any{"tls": map[string]any{"cert": srv.CertPEM, "key": srv.KeyPEM, "ca": ca.CertPEM}}, stdlib.ResumeMap{})
	pool := ca.Pool()
	post := func(certs []tls.Certificate) (int, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		defer c.CloseIdleConnections()
		resp, err := c.Post("https://"+s.Addr()+"/in", "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if _, err := post(nil); err == nil {
		t.Fatal("a client without a certificate was taken")
	}
	res := make(chan int, 1)
	go func() {
		code, err := post([]tls.Certificate{clientCert})
		if err != nil {
			t.Error(err)
		}
		res <- code
	}()
	recs := readAll(t, s, 1)
	s.Commit(t.Context(), []stdlib.Position{recs[0].Pos})
	if code := <-res; code != 200 {
		t.Fatalf("status %d", code)
	}
}

// TestHTTPServerBasicAuth: with basic_auth only the right user and
// password are taken.
func TestHTTPServerBasicAuth(t *testing.T) {
	s := newServerFor(t, t.TempDir(), map[string]any{"basic_auth": map[string]any{"username": "u", "password": "p"}}, stdlib.ResumeMap{})
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {"Basic dTp4", 401}} { // u:x
		if a := wait(t, send(s, "POST", `{"a":1}`, "Authorization", c.auth)); a.status != c.want || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%q: %d %v", c.auth, a.status, a.header)
		}
	}
	ch := send(s, "POST", `{"a":1}`, "Authorization", "Basic dTpw") // u:p
	recs := readAll(t, s, 1)
	s.Commit(t.Context(), []stdlib.Position{recs[0].Pos})
	if a := wait(t, ch); a.status != 200 {
		t.Fatalf("right password: %d", a.status)
	}
}
