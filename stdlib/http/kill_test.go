package httpconn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
)

// waitListening waits until something listens on port.
func waitListening(t *testing.T, port int) {
	for range 200 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %d", port)
}

// TestKillHTTPServer runs an http_server → file (exactly_once) pipeline
// under `pipe run` and SIGKILLs it at random moments while clients post
// requests of several NDJSON records, each with an Idempotency-Key, and
// retry every request until it is answered 2xx (a broken connection, a
// 503 or 429 is retried with the same key). After one in eight answers a
// request answered 2xx before, picked at random (most likely in an
// earlier run), is sent once more, as a client that lost the answer
// would. After the
// last restart and a clean stop, the output must hold every record of
// every request exactly once: a request answered 2xx was durable (none
// lost), and no retry doubled one. Set PIPE_KILLTEST=1 to run it;
// PIPE_KILLTEST_RECORDS (requests) and PIPE_KILLTEST_KILLS scale it.
func TestKillHTTPServer(t *testing.T) {
	n, kills := proctest.KillTest(t, 2000, 12)
	bin := proctest.BuildPipe(t)
	port := testkit.FreePort(t)
	src := `pipeline hook_kill {
  delivery   = exactly_once
  checkpoint = 300ms
}
source in: http_server {
  listen = "127.0.0.1:${env:PORT}"
  path   = "/hook"
  format = ndjson
  bearer_token = "${env:TOKEN}"
}
transform t: map {
  off := meta.offset
  key := meta.key
}
sink out: file {
  path = "${env:OUT}"
}
in -> t -> out
`
	k := proctest.NewKill(t, bin, "hook", src)
	out := filepath.Join(k.Dir, "out", "records.jsonl")
	url := fmt.Sprintf("http://127.0.0.1:%d/hook", port)

	// Requests: request i holds 1 + i%5 records {req: i, n: j}.
	var (
		sent2xx  atomic.Int64
		attempts atomic.Int64
		resent   atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	var (
		answeredMu sync.Mutex
		answered   []int
	)
	client := &http.Client{Timeout: 20 * time.Second}
	post := func(i int) (int, error) {
		var body bytes.Buffer
		for j := range 1 + i%5 {
			fmt.Fprintf(&body, "{\"req\":%d,\"n\":%d}\n", i, j)
		}
		req, _ := http.NewRequest("POST", url, &body)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("req-%d", i))
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// The clients post every request until it is answered 2xx, then
	// give up a minute after the last run started.
	produce := func() error {
		// Requests are started at an even pace over the kills, by tokens.
		span := time.Duration(kills)*1650*time.Millisecond + time.Second
		tokens := make(chan int)
		go func() {
			tick := time.NewTicker(span / time.Duration(n))
			defer tick.Stop()
			for i := range n {
				select {
				case tokens <- i:
				case <-stop:
					return
				}
				<-tick.C
			}
			close(tokens)
		}()
		const clients = 32
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range tokens {
					for {
						attempts.Add(1)
						code, err := post(i)
						if err == nil && code == 200 {
							break
						}
						if err == nil && code != 503 && code != 429 {
							t.Errorf("request %d: status %d", i, code)
							return
						}
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
						}
					}
					sent2xx.Add(1)
					answeredMu.Lock()
					answered = append(answered, i)
					again := answered[rand.IntN(len(answered))]
					answeredMu.Unlock()
					if rand.IntN(8) == 0 {
						// A request answered 2xx before, most likely in an
						// earlier run, sent again: its answer was "lost".
						for {
							code, err := post(again)
							if err == nil && code == 200 {
								resent.Add(1)
								break
							}
							time.Sleep(50 * time.Millisecond)
						}
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(span + 60*time.Second):
			close(stop)
			return fmt.Errorf("clients did not finish: %d of %d requests answered 2xx", sent2xx.Load(), n)
		}
	}
	k.Kills = kills
	k.Env = []string{fmt.Sprintf("PORT=%d", port), "OUT=" + out, "TOKEN=s3cret"}
	k.Life = func() time.Duration { return time.Duration(800+rand.IntN(1700)) * time.Millisecond }
	k.Produce = produce
	k.Progress = func() string {
		return fmt.Sprintf("%d requests answered 2xx, %d attempts", sent2xx.Load(), attempts.Load())
	}
	// Every request was answered 2xx: its records are durable.
	k.Complete = func(t *testing.T) {}
	// Every record of every request (id 10*request + record), once.
	k.Check = func(t *testing.T) proctest.Tallied {
		t.Logf("%d requests, %d attempts, %d answered 2xx sent again", n, attempts.Load(), resent.Load())
		if resent.Load() == 0 && n >= 100 {
			t.Error("no request answered 2xx was sent again: the test did not cover duplicates")
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var ids []int64
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r struct{ Req, N int64 }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("output line %q: %v", sc.Text(), err)
			}
			ids = append(ids, 10*r.Req+r.N)
		}
		want := map[int64]bool{}
		for i := range int64(n) {
			for j := range 1 + i%5 {
				want[10*i+j] = true
			}
		}
		return proctest.TallyIDs(want, ids)
	}
	k.Run(t)
}

// TestKillHTTPSink runs a file → http (at_least_once) pipeline under `pipe
// run` against a receiver in the test that counts what it gets by
// Idempotency-Key and answers 500, 503 or 429 to 3 in 100 requests;
// the run is SIGKILLed at random moments and restarted. At the end every
// record must have arrived (none lost), every key must always have named
// the same record (the key is derived from the source position, so that a
// receiver can drop the replays), and the distinct keys must be exactly
// the records.
func TestKillHTTPSink(t *testing.T) {
	n, kills := proctest.KillTest(t, 10000, 10)
	bin := proctest.BuildPipe(t)
	var (
		mu     sync.Mutex
		byKey  = map[string]string{}
		count  = map[string]int{}
		bodies atomic.Int64
		bad    atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch rand.IntN(100) {
		case 0:
			w.WriteHeader(500)
			return
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			return
		case 2:
			w.WriteHeader(429)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		if prev, ok := byKey[key]; ok && prev != string(body) {
			bad.Add(1)
		}
		byKey[key] = string(body)
		count[key]++
		mu.Unlock()
		bodies.Add(1)
	}))
	defer srv.Close()
	src := `pipeline sink_kill {
  delivery   = at_least_once
  checkpoint = 300ms
}
source in: file {
  path   = "${env:IN}"
  format = json
  batch  = 100
}
sink out: http {
  url         = "${env:URL}"
  concurrency = 8
  rate_limit  = 1000
}
in -> out
`
	k := proctest.NewKill(t, bin, "sink", src)
	in := filepath.Join(k.Dir, "in.jsonl")
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, "{\"id\":%d,\"pad\":%q}\n", i, strings.Repeat("x", i%7))
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	k.Kills = kills
	k.Env = []string{"IN=" + in, "URL=" + srv.URL + "/in"}
	// The file source is bounded: the last run ends by itself.
	k.Ends = true
	k.Life = func() time.Duration { return time.Duration(1000+rand.IntN(1500)) * time.Millisecond }
	k.Progress = func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d keys received", len(byKey))
	}
	// The records of the distinct keys: each once (a replay comes
	// under its key again, a record under two keys is doubled).
	k.Check = func(t *testing.T) proctest.Tallied {
		mu.Lock()
		defer mu.Unlock()
		if bad.Load() > 0 {
			t.Errorf("%d keys arrived with another record than before", bad.Load())
		}
		var ids []int64
		again := 0
		for key, body := range byKey {
			var r struct{ ID int64 }
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatalf("key %s: body %q: %v", key, body, err)
			}
			ids = append(ids, r.ID)
			again += count[key] - 1
		}
		t.Logf("%d records, %d requests answered 2xx, %d of them replays a receiver dropped by key", n, bodies.Load(), again)
		return proctest.TallyIDs(proctest.Want(0, int64(n)), ids)
	}
	k.Run(t)
}

// TestKillHTTPPoll runs an http_poll → file (exactly_once) pipeline under
// `pipe run` against an API in the test that pages through its items by
// cursor (slowly, so that runs end mid-way), SIGKILLs it at random moments
// and restarts it. Every restart must continue at the cursor of the last
// durable record: at the end the output holds every item exactly once.
func TestKillHTTPPoll(t *testing.T) {
	n, kills := proctest.KillTest(t, 3000, 10)
	bin := proctest.BuildPipe(t)
	api := &pagedAPI{total: n, size: 20}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(40 * time.Millisecond) // about 500 items a second
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()
	src := `pipeline poll_kill {
  delivery   = exactly_once
  checkpoint = 200ms
}
schema Item {
  id: int
}
source api: http_poll {
  url          = "${env:URL}"
  interval     = 1s
  records      = "body.data"
  cursor       = "body.next"
  cursor_param = "since"
  bearer_token = "${env:TOKEN}"
  schema       = Item
}
sink out: file {
  path = "${env:OUT}"
}
api -> out
`
	k := proctest.NewKill(t, bin, "poll", src)
	out := filepath.Join(k.Dir, "out", "items.jsonl")
	k.Kills = kills
	k.Env = []string{"URL=" + srv.URL + "/items", "OUT=" + out, "TOKEN=tok"}
	k.Life = func() time.Duration { return time.Duration(400+rand.IntN(600)) * time.Millisecond }
	k.Progress = func() string {
		b, _ := os.ReadFile(out)
		return fmt.Sprintf("%d lines in the output", bytes.Count(b, []byte{'\n'}))
	}
	// Until the last page was asked for, and a checkpoint after it.
	k.Complete = func(t *testing.T) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			api.mu.Lock()
			asked := len(api.cursors) > 0 && api.cursors[len(api.cursors)-1] == strconv.Itoa(n)
			api.mu.Unlock()
			if asked {
				time.Sleep(500 * time.Millisecond)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte{'\n'}) {
			var r struct{ ID int64 }
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			ids = append(ids, r.ID)
		}
		api.mu.Lock()
		t.Logf("%d items, %d requests", n, len(api.cursors))
		api.mu.Unlock()
		return proctest.TallyIDs(proctest.Want(1, int64(n)+1), ids)
	}
	k.Run(t)
}
