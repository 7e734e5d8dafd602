package postgres

import (
	"context"
	"os"
	osexec "os/exec"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// restartServer restarts the local PostgreSQL cluster (root only).
func restartServer(t *testing.T) {
	t.Helper()
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) == 0 {
		t.Fatalf("no local postgresql cluster to restart: %v", err)
	}
	out, err := osexec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", "restart").CombinedOutput()
	if err != nil {
		t.Errorf("restart postgresql: %v: %s", err, out)
	}
}

// TestServerRestart restarts the server while an exactly-once sink writes
// and a source reads: both wait, reconnect and carry on; the table holds
// every row once and the source misses none. It restarts the machine's
// PostgreSQL, so it runs only with PIPE_PG_RESTART=1.
func TestServerRestart(t *testing.T) {
	if os.Getenv("PIPE_PG_RESTART") != "1" {
		t.Skip("restarts the local postgresql: set PIPE_PG_RESTART=1")
	}
	e := newPG(t)
	table := e.table("rs")
	cfg := e.sinkConfig(map[string]any{"table": table, "create_table": true, "key": []any{"id"},
		"mode": stdlib.Ident("upsert"), "retry_timeout": time.Minute}, eventType, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	src := e.openSource(map[string]any{"table": table, "incrementing_column": "id", "retry_timeout": time.Minute}, nil, nil)

	restarted := make(chan struct{})
	const total, per = 20000, 500
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
	restartServer(t)
	if err := s.Write(t.Context(), events(total, total+per)); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 99, Positions: pos(total + per - 1)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	waitConn(ctx, t, e)
	got := e.rows("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM " + table)
	if want := "count=20500 count=20500 min=0 max=20499"; got[0] != want {
		t.Fatalf("%s, want %s", got[0], want)
	}
	// The source read across the restarts too.
	seen := map[int64]bool{}
	for len(seen) < total+per {
		recs, err := src.Read(ctx)
		if err != nil {
			t.Fatalf("source Read after %d rows: %v", len(seen), err)
		}
		for _, r := range recs {
			id := r.Value.(map[string]any)["id"].(int64)
			if seen[id] {
				t.Fatalf("source read id %d twice", id)
			}
			seen[id] = true
		}
	}
}

// waitConn replaces the test's own connection, which the restart broke.
func waitConn(ctx context.Context, t *testing.T, e *pgEnv) {
	t.Helper()
	for {
		c, err := connect(ctx, testDSN())
		if err == nil {
			e.conn = c
			return
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
