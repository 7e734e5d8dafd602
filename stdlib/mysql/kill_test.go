package mysql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
)

// killPipeline generates ids 1..n at a steady rate into a MySQL table,
// exactly once: by upsert on the key id, or by insert into a table
// without a key, where a record written twice shows as two rows.
const killPipeline = `pipeline kill_mysql_%s {
  delivery   = exactly_once
  checkpoint = 300ms
}

source gen: generate {
  count = %d
  rate  = %d
  seed  = 7
  batch = 20
  fields = {
    id   = seq()
    name = format("n%%d", random_int(1, 1000000))
    at   = timestamp(start = "2024-01-01T00:00:00Z", step = 1s)
  }
}

sink out: mysql {
  dsn          = "${env:MYSQL_DSN}"
  table        = "${env:MYSQL_TABLE}"
  %s
  create_table = true
  batch        = 50
  delivery     = exactly_once
}

gen -> out
`

// TestKillMySQL SIGKILLs `pipe run` of a generate -> mysql pipeline at
// random moments, restarts it, and checks that the table holds every
// generated id exactly once (proctest.Kill). The "insert" variant writes to a table
// without a key, so that a record committed twice would show as two rows.
// The "server_restart" variant (insert) is not killed: MariaDB is
// stopped and started again twice during one run instead.
// Set PIPE_KILLTEST=1 to run it; PIPE_KILLTEST_RECORDS and
// PIPE_KILLTEST_KILLS scale it.
func TestKillMySQL(t *testing.T) {
	n, kills := proctest.KillTest(t, 3000, 12)
	e := newMy(t)
	root := proctest.ModuleRoot(t)
	bin := proctest.BuildPipe(t)
	dir := t.TempDir()
	for _, variant := range []string{"upsert", "insert", "server_restart"} {
		t.Run(variant, func(t *testing.T) {
			mode := "mode = upsert\n  key  = [\"id\"]"
			if variant != "upsert" {
				mode = "mode = insert"
			}
			k := kills
			// The records come over about as long as the kills take.
			rate := max(n*1000/(k*1050+2000), 1)
			var during func(t *testing.T)
			if variant == "server_restart" {
				k = 0
				rate = max(n/8, 1) // about 8s: both restarts fall inside the run
				// MariaDB stops and starts again twice during the run.
				during = func(t *testing.T) {
					for range 2 {
						time.Sleep(time.Duration(1500+rand.IntN(1500)) * time.Millisecond)
						restartServer(t)
					}
					ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
					waitServer(ctx, t, e)
					cancel()
				}
			}
			file := filepath.Join(dir, variant+".pipe")
			if err := os.WriteFile(file, fmt.Appendf(nil, killPipeline, variant, n, rate, mode), 0o644); err != nil {
				t.Fatal(err)
			}
			table := "kill_" + variant
			(&proctest.Kill{
				Bin: bin, File: file, State: filepath.Join(dir, "state-"+variant), Dir: root, Name: variant,
				Env: []string{"MYSQL_DSN=" + e.dsn(), "MYSQL_TABLE=" + table}, Kills: k, During: during, Ends: true,
				Life: func() time.Duration { return time.Duration(500+rand.IntN(1100)) * time.Millisecond },
				Progress: func() string {
					var rows int64
					e.db.QueryRow("SELECT count(*) FROM " + table).Scan(&rows)
					return fmt.Sprintf("%d rows", rows)
				},
				Check: func(t *testing.T) proctest.Tallied {
					var ids []int64
					for _, r := range e.rows("SELECT id FROM " + table) {
						id, _ := strconv.ParseInt(strings.TrimPrefix(r, "id="), 10, 64)
						ids = append(ids, id)
					}
					return proctest.TallyIDs(proctest.Want(1, int64(n)+1), ids)
				},
			}).Run(t)
		})
	}
}

// restartServer stops MariaDB and starts it again with the machine's
// start command (root only), and waits until it answers. It may run in
// another goroutine than the test's: it reports with t.Error.
func restartServer(t *testing.T) {
	t.Helper()
	if out, err := osexec.Command("mariadb-admin", "-uroot", "-h127.0.0.1", "shutdown").CombinedOutput(); err != nil {
		t.Errorf("stop mariadb: %v: %s", err, out)
	}
	// The shutdown command returns before the process ends: the start
	// command does nothing while it runs.
	err := testkit.Await(time.Minute, func() error {
		if osexec.Command("pidof", "mariadbd").Run() == nil {
			return errors.New("mariadbd did not stop in a minute")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if out, err := osexec.Command("start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd").CombinedOutput(); err != nil {
		t.Errorf("start mariadb: %v: %s", err, out)
	}
	err = testkit.Await(time.Minute, func() error {
		return osexec.Command("mariadb-admin", "-uroot", "-h127.0.0.1", "--connect-timeout=1", "ping").Run()
	})
	if err != nil {
		t.Errorf("mariadb did not come back in a minute: %v", err)
	}
}

// waitServer waits until the server answers again.
func waitServer(ctx context.Context, t *testing.T, e *myEnv) {
	t.Helper()
	for {
		err := e.db.PingContext(ctx)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
