package mysql

import (
	"context"
	"os"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// TestServerRestartMySQL stops MariaDB (mariadb-admin shutdown) and starts
// it again, twice, while an exactly-once sink writes and a source reads:
// both wait, reconnect and carry on; the table holds every row once and
// the source misses none. The second restart comes right before a
// checkpoint, so that the open transaction dies with the server. It
// restarts the machine's MariaDB, so it runs only with PIPE_KILLTEST=1.
func TestServerRestartMySQL(t *testing.T) {
	if os.Getenv("PIPE_KILLTEST") != "1" {
		t.Skip("restarts the local mariadb: set PIPE_KILLTEST=1")
	}
	e := newMy(t)
	table := "rs"
	cfg := e.sinkConfig(map[string]any{"table": table, "create_table": true, "key": []any{"id"},
		"mode": stdlib.Ident("upsert"), "batch": int64(500), "retry_timeout": time.Minute}, eventType, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	src := e.openSource(map[string]any{"table": table, "incrementing_column": "id", "batch": int64(700),
		"poll": 100 * time.Millisecond, "retry_timeout": time.Minute}, nil, nil)

	// The source reads while the sink writes and the server restarts.
	type result struct {
		seen map[int64]int
		err  error
	}
	const total, per = 20000, 500
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	read := make(chan result, 1)
	go func() {
		seen := map[int64]int{}
		for len(seen) < total+per {
			recs, err := src.Read(ctx)
			if err != nil {
				read <- result{seen, err}
				return
			}
			for _, r := range recs {
				seen[r.Value.(map[string]any)["id"].(int64)]++
			}
		}
		read <- result{seen, nil}
	}()

	restarted := make(chan struct{})
	for n := int64(0); n < total; n += per {
		if n == total/4 {
			go func() { defer close(restarted); restartServer(t) }()
		}
		if err := s.Write(t.Context(), events(n, n+per)); err != nil {
			t.Fatalf("Write at %d: %v", n, err)
		}
		if (n+per)%(total/8) == 0 {
			if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: uint64(n), Positions: pos(n + per - 1)}); err != nil {
				t.Fatalf("Checkpoint at %d: %v", n, err)
			}
		}
	}
	<-restarted
	// Restart again right before a checkpoint: the open transaction dies.
	if err := s.Write(t.Context(), events(total, total+per)); err != nil {
		t.Fatal(err)
	}
	restartServer(t)
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 99, Positions: pos(total + per - 1)}); err != nil {
		t.Fatal(err)
	}
	waitServer(ctx, t, e)
	got := e.rows("SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM " + table)
	if want := "n=20500 ids=20500 lo=0 hi=20499"; got[0] != want {
		t.Fatalf("%s, want %s", got[0], want)
	}
	r := <-read
	if r.err != nil {
		t.Fatalf("source Read after %d rows: %v", len(r.seen), r.err)
	}
	for id, c := range r.seen {
		if c != 1 {
			t.Fatalf("source read id %d %d times", id, c)
		}
	}
	if len(r.seen) != total+per {
		t.Fatalf("source read %d ids, want %d", len(r.seen), total+per)
	}
}
