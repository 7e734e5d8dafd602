package httpconn

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// pagedAPI serves items 1..total in pages of size after the cursor given
// (?cursor=N: items above N), with the last id as next cursor; it records
// the cursors asked for.
type pagedAPI struct {
	mu      sync.Mutex
	total   int
	size    int
	cursors []string
	fail    int // answer 503 to this many requests first
}

func (a *pagedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(401)
		return
	}
	if a.fail > 0 {
		a.fail--
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(503)
		return
	}
	c := r.URL.Query().Get("since")
	a.cursors = append(a.cursors, c)
	from, _ := strconv.Atoi(c)
	var items []map[string]any
	for id := from + 1; id <= min(from+a.size, a.total); id++ {
		items = append(items, map[string]any{"id": id})
	}
	next := any(nil)
	if len(items) > 0 {
		next = items[len(items)-1]["id"]
	}
	json.NewEncoder(w).Encode(map[string]any{"data": items, "next": next})
}

func newPollerFor(t *testing.T, dir, url string, resume stdlib.Resumer) *poller {
	t.Helper()
	vals, err := PollSourceSpec.Values(map[string]any{"url": url, "interval": 50 * time.Millisecond, "records": "body.data",
		"cursor": "body.next", "cursor_param": "since", "bearer_token": "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkPoll(vals); len(errs) > 0 {
		t.Fatal(errs)
	}
	return stdlibtest.OpenSource[*poller](t, resume)(newPoller(stdlib.Config{Pipeline: "p", Stage: "api", Attrs: vals, Tasks: 1, StateDir: dir}))
}

// readIDs reads until n records came.
func readIDs(t *testing.T, p *poller, n int) (ids []int64, last stdlib.Position) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(ids) < n && time.Now().Before(deadline) {
		recs, err := p.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			ids = append(ids, r.Value.(map[string]any)["id"].(int64))
			last = r.Pos
		}
	}
	if len(ids) != n {
		t.Fatalf("read %d records, want %d", len(ids), n)
	}
	return ids, last
}

// TestPollResumes: the poller pages through the API with the cursor taken
// from each response, retries a 503, and after a restart continues at the
// cursor of the last durable position: records handed on after it (not
// made durable) are fetched again, nothing before it is.
func TestPollResumes(t *testing.T) {
	api := &pagedAPI{total: 25, size: 10, fail: 2}
	srv := httptest.NewServer(api)
	defer srv.Close()
	dir := t.TempDir()
	p := newPollerFor(t, dir, srv.URL+"/items", stdlib.ResumeMap{})
	ids, _ := readIDs(t, p, 20)
	if ids[0] != 1 || ids[19] != 20 {
		t.Fatalf("ids %v", ids)
	}
	// Durable up to the first page (offset 10): the second page was lost.
	held := int64(10)
	p.Close(context.Background())

	p2 := newPollerFor(t, dir, srv.URL+"/items", stdlib.ResumeMap{p.partition: held})
	ids, last := readIDs(t, p2, 15)
	if ids[0] != 11 || ids[14] != 25 {
		t.Fatalf("after restart: ids %v, want 11..25", ids)
	}
	if last.Offset <= 20 {
		t.Errorf("offsets given twice: last offset %d", last.Offset)
	}
	// Durable up to the end: a restart asks from cursor 25 and gets nothing.
	p2.Commit(t.Context(), []stdlib.Position{last})
	p2.Close(context.Background())
	p3 := newPollerFor(t, dir, srv.URL+"/items", stdlib.ResumeMap{p.partition: last.Offset})
	time.Sleep(120 * time.Millisecond)
	for range 3 {
		if recs, err := p3.Read(t.Context()); err != nil || len(recs) > 0 {
			t.Fatalf("after the end: %d records, %v", len(recs), err)
		}
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if c := api.cursors[len(api.cursors)-1]; c != "25" {
		t.Fatalf("cursors asked %v, want the last 25", api.cursors)
	}
	want := []string{"", "10", "10", "20", "25", "25"}
	for i, c := range want {
		if api.cursors[i] != c {
			t.Fatalf("cursors asked %v, want %v first", api.cursors, want)
		}
	}
}

func TestPollCheck(t *testing.T) {
	vals, _ := PollSourceSpec.Values(map[string]any{"url": "http://x", "cursor": "body.(", "method": "PUT"})
	errs := checkPoll(vals)
	if len(errs) != 2 {
		t.Fatalf("errors %v, want the cursor and the method", errs)
	}
}
