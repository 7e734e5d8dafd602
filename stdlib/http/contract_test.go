package httpconn

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the http sink and the http_poll
// source against an API served in the test. The http_server source is not
// in it: it takes records only while it runs and answers them once a
// checkpoint covers them, while the suite writes a source's input before
// it opens and never commits (server_test.go and TestKillHTTPServer test
// it). The sink is at least once: SinkHeld and CheckpointAtomic skip it.
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t)) }

// TestServerRestartHTTPContract stops the API server and starts it again
// on the same address while the poll source reads and the sink writes
// (stdlibtest.Reconnect); PIPE_KILLTEST=1 runs it.
func TestServerRestartHTTPContract(t *testing.T) { stdlibtest.Reconnect(t, contract(t)) }

// contractAPI serves, per target path, the items polled (GET
// <path>/items?since=N: the items after the Nth, the count as next
// cursor) and the records posted (POST <path>/in: a record with a
// negative id is refused with 400). It asks for the bearer token "tok".
type contractAPI struct {
	mu       sync.Mutex
	items    map[string][]int64
	received map[string][]int64
	addr     string
	srv      *http.Server
}

func (a *contractAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch path := r.URL.Path; {
	case r.Method == http.MethodGet && strings.HasSuffix(path, "/items"):
		items := a.items[strings.TrimSuffix(path, "/items")]
		since, _ := strconv.Atoi(r.URL.Query().Get("since"))
		var page []map[string]any
		for _, id := range items[min(since, len(items)):] {
			page = append(page, map[string]any{"id": id, "name": fmt.Sprintf("n%d", id)})
		}
		json.NewEncoder(w).Encode(map[string]any{"data": page, "next": len(items)})
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/in"):
		var rec struct{ ID int64 }
		if err := json.NewDecoder(r.Body).Decode(&rec); err != nil || rec.ID < 0 {
			http.Error(w, "bad record", http.StatusBadRequest)
			return
		}
		target := strings.TrimSuffix(path, "/in")
		a.received[target] = append(a.received[target], rec.ID)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// start serves on a.addr (a new port the first time).
func (a *contractAPI) start(t *testing.T) {
	addr := a.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	var err error
	for range 50 { // the port of a server just closed may still be taken
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	a.addr = l.Addr().String()
	a.srv = &http.Server{Handler: a}
	go a.srv.Serve(l)
}

func contract(t *testing.T) stdlibtest.Connector {
	api := &contractAPI{items: map[string][]int64{}, received: map[string][]int64{}}
	api.start(t)
	t.Cleanup(func() { api.srv.Close() })
	n := 0
	return stdlibtest.Connector{
		Source: PollSourceSpec,
		Sink:   SinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			n++
			path := fmt.Sprintf("/t%d", n)
			base := "http://" + api.addr + path
			return &stdlibtest.Target{
				Source: map[string]any{"url": base + "/items", "interval": 50 * time.Millisecond, "records": "body.data",
					"cursor": "body.next", "cursor_param": "since", "bearer_token": "tok", "retry_timeout": time.Minute},
				Sink:     map[string]any{"url": base + "/in", "bearer_token": "tok", "retry_timeout": time.Minute},
				StateDir: t.TempDir(), // the poller's position log
				Produce: func(t *testing.T, ids []int64) {
					api.mu.Lock()
					defer api.mu.Unlock()
					api.items[path] = append(api.items[path], ids...)
				},
				Written: func(t *testing.T) []int64 {
					api.mu.Lock()
					defer api.mu.Unlock()
					return append([]int64(nil), api.received[path]...)
				},
			}
		},
		// The receiver refuses it (400).
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": "bad"}, Partition: -1, Pos: pos}
		},
		// A token the API refuses (401).
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			base := "http://" + api.addr + "/secret"
			return map[string]any{"url": base + "/items", "records": "body.data", "bearer_token": secret, "retry_timeout": time.Second},
				map[string]any{"url": base + "/in", "bearer_token": secret, "retry_timeout": time.Second}
		},
		Restart: func(t *testing.T) {
			api.srv.Close()
			time.Sleep(time.Second)
			api.start(t)
		},
	}
}
