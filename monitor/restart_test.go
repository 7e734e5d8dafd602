package monitor

import (
	"context"
	"fmt"
	"net/http"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const pgDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// pgCluster runs pg_ctlcluster verb on the local PostgreSQL (root only).
func pgCluster(t *testing.T, verb string) {
	t.Helper()
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) == 0 {
		t.Fatalf("no local postgresql cluster: %v", err)
	}
	out, err := osexec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", verb).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctlcluster %s: %v: %s", verb, err, out)
	}
}

// waitHealth polls /health until it answers code with a body holding
// every one of want; it returns the body.
func waitHealth(t *testing.T, url string, code int, within time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, body := call(t, "GET", url+"/health", "")
		ok := got == code
		for _, w := range want {
			ok = ok && strings.Contains(body, w)
		}
		if ok {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health did not answer %d within %s; last: %d %s", code, within, got, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServerRestart stops the PostgreSQL server an exactly-once sink writes
// to: /health turns 503 naming the sink, and 200 again once the server is
// back and checkpoints complete; no row is lost or doubled. It stops the
// machine's PostgreSQL, so it runs only with PIPE_PG_RESTART=1.
func TestServerRestart(t *testing.T) {
	if os.Getenv("PIPE_PG_RESTART") != "1" {
		t.Skip("stops the local postgresql: set PIPE_PG_RESTART=1")
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		t.Fatalf("postgresql on 127.0.0.1:5432: %v", err)
	}
	table := fmt.Sprintf("mon_restart_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	conn.Close(ctx)
	src := strings.NewReplacer("TABLE", table, "DSN", pgDSN).Replace(`
pipeline TABLE {
  checkpoint = 200ms
  delivery   = exactly_once
}
source gen: generate {
  count  = 1000000
  rate   = 2000
  fields = { id = seq() }
}
sink pg: postgres {
  dsn          = "DSN"
  table        = "TABLE"
  create_table = true
  mode         = upsert
  key          = ["id"]
}
gen -> pg
`)
	p := compile(t, src)
	r := start(t, p, Options{})
	url := r.srv.URL()
	eventually(t, url, "two checkpoints", func(m metrics) bool {
		n, _ := m.get("pipe_checkpoints_total")
		return n >= 2
	})
	waitHealth(t, url, http.StatusOK, 30*time.Second)

	pgCluster(t, "stop")
	restarted := false
	defer func() {
		if !restarted {
			pgCluster(t, "start")
		}
	}()
	body := waitHealth(t, url, http.StatusServiceUnavailable, 30*time.Second, "no checkpoint completed", `sink \"pg\" task 0: a`)
	t.Logf("/health while the server is down: %s", body)
	pgCluster(t, "start")
	restarted = true
	waitHealth(t, url, http.StatusOK, 90*time.Second)
	if err := r.stop(t, ""); err != nil {
		t.Fatalf("run: %v", err)
	}

	conn, err = pgx.Connect(ctx, pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	defer conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
	defer conn.Exec(context.Background(), "DELETE FROM pipe_offsets WHERE pipeline = $1", table)
	var n, distinct, minID, maxID int64
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT id), coalesce(min(id), -1), coalesce(max(id), -1) FROM "+table).Scan(&n, &distinct, &minID, &maxID); err != nil {
		t.Fatal(err)
	}
	if n == 0 || n != distinct || minID != 1 || n != maxID {
		t.Fatalf("table holds %d rows, %d distinct ids from %d to %d: want every id from 1 once", n, distinct, minID, maxID)
	}
	t.Logf("%d rows, every id once", n)
}
