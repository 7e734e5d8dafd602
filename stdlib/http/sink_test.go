package httpconn

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
)

// newSinkFor builds and opens an http sink with attrs; exprs names the
// attributes set per record (their values in Record.Attrs).
func newSinkFor(t *testing.T, attrs map[string]any, exprs ...string) *sink {
	t.Helper()
	vals, err := SinkSpec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkSink(vals); len(errs) > 0 {
		t.Fatal(errs)
	}
	s, err := newSink(stdlib.Config{Pipeline: "p", Stage: "out", Attrs: vals, Tasks: 1, Exprs: exprs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(t.Context()) })
	return s
}

// records returns n records {id: i} of partition "f" at offsets 10, 20, ...
func records(n int) []stdlib.Record {
	out := make([]stdlib.Record, n)
	for i := range out {
		out[i] = stdlib.Record{Value: map[string]any{"id": int64(i)}, Pos: stdlib.Position{Source: "src", Partition: "f", Offset: int64(10 * (i + 1))}}
	}
	return out
}

// flaky is a receiver that answers 429, 503 (with Retry-After) or 500 to
// a share of the requests at random and records the others' bodies by
// idempotency key.
type flaky struct {
	mu       sync.Mutex
	byKey    map[string][]byte
	count    map[string]int
	refused  int
	share    int // one in share requests is refused
	afterSec string
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if mrand.IntN(f.share) == 0 {
		f.refused++
		switch mrand.IntN(3) {
		case 0:
			w.Header().Set("Retry-After", f.afterSec)
			w.WriteHeader(429)
		case 1:
			w.Header().Set("Retry-After", f.afterSec)
			w.WriteHeader(503)
		default:
			w.WriteHeader(500)
		}
		return
	}
	if f.byKey == nil {
		f.byKey, f.count = map[string][]byte{}, map[string]int{}
	}
	k := r.Header.Get("Idempotency-Key")
	f.byKey[k] = body
	f.count[k]++
}

// TestSinkRetriesEverything: against a receiver refusing a fifth of the
// requests with 429, 503 or 500, every record is delivered, under the
// idempotency key of its position.
func TestSinkRetriesEverything(t *testing.T) {
	for _, format := range []string{"json", "ndjson", "json_array"} {
		t.Run(format, func(t *testing.T) {
			f := &flaky{share: 5, afterSec: "0"}
			srv := httptest.NewServer(f)
			defer srv.Close()
			s := newSinkFor(t, map[string]any{"url": srv.URL, "format": stdlib.Ident(format), "max_batch_records": int64(7), "concurrency": int64(8)})
			const n = 500
			batch := records(n)
			for i := 0; i < n; i += 100 {
				if err := s.Write(t.Context(), batch[i:i+100]); err != nil {
					t.Fatal(err)
				}
			}
			ids := map[int64]int{}
			for k, body := range f.byKey {
				var vals []map[string]int64
				switch format {
				case "json":
					var v map[string]int64
					if err := json.Unmarshal(body, &v); err != nil {
						t.Fatalf("%s: %q: %v", k, body, err)
					}
					vals = append(vals, v)
					if want := fmt.Sprintf("p/src/f/%d", 10*(v["id"]+1)); k != want {
						t.Errorf("key %q, want %q", k, want)
					}
				case "json_array":
					if err := json.Unmarshal(body, &vals); err != nil {
						t.Fatalf("%s: %q: %v", k, body, err)
					}
				case "ndjson":
					sc := bufio.NewScanner(bytes.NewReader(body))
					for sc.Scan() {
						var v map[string]int64
						if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
							t.Fatalf("%s: %q: %v", k, body, err)
						}
						vals = append(vals, v)
					}
				}
				if format != "json" {
					if len(vals) > 7 {
						t.Errorf("%d records in one request, max_batch_records 7", len(vals))
					}
					if want := fmt.Sprintf("p/src/f/%d-%d", 10*(vals[0]["id"]+1), 10*(vals[len(vals)-1]["id"]+1)); len(vals) > 1 && k != want {
						t.Errorf("key %q, want %q", k, want)
					}
				}
				for _, v := range vals {
					ids[v["id"]]++
				}
			}
			if f.refused == 0 {
				t.Fatal("the receiver refused nothing")
			}
			for i := range int64(n) {
				if ids[i] != 1 {
					t.Fatalf("record %d delivered %d times (%d refusals retried)", i, ids[i], f.refused)
				}
			}
			t.Logf("%d records delivered, %d refusals retried", n, f.refused)
		})
	}
}

// TestSinkRetryAfter: a 429's Retry-After is waited for.
func TestSinkRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		}
	}))
	defer srv.Close()
	s := newSinkFor(t, map[string]any{"url": srv.URL})
	if err := s.Write(t.Context(), records(1)); err != nil {
		t.Fatal(err)
	}
	if len(times) != 2 || times[1].Sub(times[0]) < time.Second {
		t.Fatalf("attempts at %v: want the second a second after the first", times)
	}
}

// TestSinkRejects: a 4xx rejects the request's records (RecordErrors
// with the status and the body, for the stage's on_error); the others
// are delivered.
func TestSinkRejects(t *testing.T) {
	var got sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]int64
		json.NewDecoder(r.Body).Decode(&v)
		if v["id"]%3 == 1 {
			w.WriteHeader(422)
			io.WriteString(w, `{"error":"id not allowed"}`)
			return
		}
		got.Store(v["id"], true)
	}))
	defer srv.Close()
	s := newSinkFor(t, map[string]any{"url": srv.URL})
	err := s.Write(t.Context(), records(9))
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) || len(rerrs) != 3 {
		t.Fatalf("Write: %v", err)
	}
	for i, re := range rerrs {
		if re.Index != 1+3*i || !strings.Contains(re.Err.Error(), "422") || !strings.Contains(re.Err.Error(), "id not allowed") {
			t.Errorf("rejection %d: %d %v", i, re.Index, re.Err)
		}
	}
	for _, i := range []int64{0, 2, 3, 5, 6, 8} {
		if _, ok := got.Load(i); !ok {
			t.Errorf("record %d not delivered", i)
		}
	}
}

// TestSinkPerRecordTarget: url, method and headers := per record; records
// of one target share requests, others go apart; the bearer token is sent.
func TestSinkPerRecordTarget(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[r.Method+" "+r.URL.Path+" "+r.Header.Get("X-Region")] = append(seen[r.Method+" "+r.URL.Path+" "+r.Header.Get("X-Region")], string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	s := newSinkFor(t, map[string]any{"url": srv.URL, "format": stdlib.Ident("ndjson"), "bearer_token": "tok"}, "url", "method", "headers")
	batch := records(4)
	for i := range batch {
		region := []string{"eu", "us"}[i%2]
		batch[i].Attrs = []any{srv.URL + "/" + region, []string{"POST", "PUT"}[i%2], map[string]any{"X-Region": region}}
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"POST /eu eu": {"{\"id\":0}\n{\"id\":2}\n"},
		"PUT /us us":  {"{\"id\":1}\n{\"id\":3}\n"},
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("requests %q, want %q", seen, want)
	}
}

// TestSinkMTLS: with tls { ca, cert, key } the sink verifies the server
// and presents its client certificate; a server requiring one refuses a
// sink without it.
func TestSinkMTLS(t *testing.T) {
	ca := testkit.NewCA(t, "test ca")
	caPEM, client := ca.CertPEM, ca.Client(t, "client")
	var got string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.TLS.PeerCertificates[0].Subject.CommonName
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t).Pair(t)}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()
	s := newSinkFor(t, map[string]any{"url": srv.URL, "retry_timeout": time.Duration(0),
		"tls": map[string]any{"ca": caPEM, "cert": client.CertPEM, "key": client.KeyPEM}})
	if err := s.Write(t.Context(), records(1)); err != nil {
		t.Fatal(err)
	}
	if got != "client" {
		t.Fatalf("client certificate %q", got)
	}
	s = newSinkFor(t, map[string]any{"url": srv.URL, "retry_timeout": time.Duration(0), "tls": map[string]any{"ca": caPEM}})
	if err := s.Write(t.Context(), records(1)); err == nil {
		t.Fatal("a sink without a client certificate was accepted")
	}
}

// TestSinkGivesUp: a receiver that keeps answering 503 fails the batch
// once retry_timeout passed.
func TestSinkGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	s := newSinkFor(t, map[string]any{"url": srv.URL, "retry_timeout": 500 * time.Millisecond})
	err := s.Write(t.Context(), records(1))
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "retry_timeout") {
		t.Fatalf("Write: %v", err)
	}
}

// TestSinkSecretsNotInErrors: the bearer token and a password in the URL
// appear in no error.
func TestSinkSecretsNotInErrors(t *testing.T) {
	s := newSinkFor(t, map[string]any{"url": "http://user:hunter2@127.0.0.1:1/x?api_key=hunter3", "bearer_token": "hunter4", "retry_timeout": time.Duration(0)})
	err := s.Write(t.Context(), records(1))
	if err == nil || strings.Contains(err.Error(), "hunter") {
		t.Fatalf("Write: %v", err)
	}
}

func TestSinkCheck(t *testing.T) {
	for _, c := range []struct {
		attrs map[string]any
		want  string
	}{
		{map[string]any{"url": "ftp://x"}, "not an http"},
		{map[string]any{"url": "http://x", "method": "FETCH"}, "not one of"},
		{map[string]any{"url": "http://x", "retry_on": []any{int64(200)}}, "from 400 to 599"},
		{map[string]any{"url": "http://x", "concurrency": int64(0)}, "at least 1"},
		{map[string]any{"url": "http://x", "idempotency_header": "a b"}, "not a header name"},
	} {
		vals, err := SinkSpec.Values(c.attrs)
		if err != nil {
			t.Fatal(err)
		}
		errs := checkSink(vals)
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), c.want) {
			t.Errorf("%v: %v, want %q", c.attrs, errs, c.want)
		}
	}
}

// TestSinkRateLimitAndBasicAuth: rate_limit spaces the requests (11 at 20
// a second take at least half a second) and basic_auth is sent.
func TestSinkRateLimitAndBasicAuth(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "svc" || p != "pw" {
			w.WriteHeader(401)
			return
		}
		mu.Lock()
		n++
		mu.Unlock()
	}))
	defer srv.Close()
	s := newSinkFor(t, map[string]any{"url": srv.URL, "rate_limit": 20.0, "concurrency": int64(11),
		"basic_auth": map[string]any{"username": "svc", "password": "pw"}})
	start := time.Now()
	if err := s.Write(t.Context(), records(11)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("11 requests at 20/s took %v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 11 {
		t.Errorf("%d requests accepted", n)
	}
}
