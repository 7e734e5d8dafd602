package postgres

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pipe.dev/pipe/internal/proctest"
)

// cdcKillPipe captures one table into JSON lines, exactly once.
const cdcKillPipe = `pipeline cdc_kill {
  delivery   = exactly_once
  checkpoint = 500ms
}

source changes: postgres_cdc {
  dsn         = "${env:PG_URL}"
  publication = "${env:PUB}"
  slot        = "${env:SLOT}"
  tables      = ["${env:PG_TABLE}"]
  snapshot    = never
}

sink out: file {
  path     = "${env:OUT}"
  format   = json
  delivery = exactly_once
}

changes -> out
`

// TestKillCDC runs a postgres_cdc -> file pipeline under `pipe run` while
// a writer inserts, updates and deletes rows, SIGKILLs it at random
// moments and restarts it, and checks that the file holds every change
// exactly once, in commit order per key. Set PIPE_KILLTEST=1 to run it;
// PIPE_KILLTEST_KILLS scales it.
func TestKillCDC(t *testing.T) {
	_, kills := proctest.KillTest(t, 0, 10)
	c := newCDCEnv(t)
	table := c.table("k")
	c.exec("CREATE TABLE " + table + " (id int PRIMARY KEY, v bigint NOT NULL)")
	// The publication and the slot exist before the writer starts: the
	// source streams from the slot (no snapshot of earlier rows).
	c.exec("CREATE PUBLICATION " + quote(c.pub) + " FOR TABLE " + table)
	c.exec("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", c.slot)
	kill := proctest.NewKill(t, proctest.BuildPipe(t), "cdc", cdcKillPipe)
	out := filepath.Join(kill.Dir, "out.jsonl")
	w := &cdcWriter{table: table, rows: map[int]bool{}, want: map[int][]string{}}
	span := time.Duration(kills) * 2 * time.Second
	kill.Kills = kills
	kill.Env = []string{"PG_URL=" + testDSN(), "PUB=" + c.pub, "SLOT=" + c.slot, "PG_TABLE=" + table, "OUT=" + out}
	kill.Produce = func() error { return w.run(span) }
	kill.Progress = func() string { return fmt.Sprintf("%d changes written", len(readChanges(t, out))) }
	kill.Complete = func(t *testing.T) {
		deadline := time.Now().Add(40 * time.Second)
		for len(readChanges(t, out)) < w.total() {
			if time.Now().After(deadline) {
				t.Fatalf("%d changes in the file, want %d", len(readChanges(t, out)), w.total())
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // more would be doubles
	}
	kill.Check = func(t *testing.T) proctest.Tallied { return w.check(t, readChanges(t, out)) }
	kill.Run(t)
}

// cdcWriter inserts, updates and deletes rows of keys 1..40 in small
// transactions, one after the other, and notes each key's changes in
// commit order: "i:v", "u:v", "d".
type cdcWriter struct {
	table string
	mu    sync.Mutex
	rows  map[int]bool
	want  map[int][]string
	n     int
}

func (w *cdcWriter) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *cdcWriter) run(span time.Duration) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	end := time.Now().Add(span)
	seq := int64(0)
	for time.Now().Before(end) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		type change struct {
			id int
			s  string
		}
		var done []change
		rows := maps(w)
		for range 1 + rand.IntN(3) {
			id := 1 + rand.IntN(40)
			seq++
			var sql, s string
			switch {
			case !rows[id]:
				sql, s = fmt.Sprintf("INSERT INTO %s VALUES (%d, %d)", w.table, id, seq), fmt.Sprintf("i:%d", seq)
				rows[id] = true
			case rand.IntN(3) == 0:
				sql, s = fmt.Sprintf("DELETE FROM %s WHERE id = %d", w.table, id), "d"
				rows[id] = false
			default:
				sql, s = fmt.Sprintf("UPDATE %s SET v = %d WHERE id = %d", w.table, seq, id), fmt.Sprintf("u:%d", seq)
			}
			if _, err := tx.Exec(ctx, sql); err != nil {
				tx.Rollback(ctx)
				return err
			}
			done = append(done, change{id, s})
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		w.mu.Lock()
		w.rows = rows
		for _, c := range done {
			w.want[c.id] = append(w.want[c.id], c.s)
		}
		w.n += len(done)
		w.mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(4)) * time.Millisecond)
	}
	return nil
}

// maps returns a copy of the writer's live rows.
func maps(w *cdcWriter) map[int]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[int]bool, len(w.rows))
	for k, v := range w.rows {
		m[k] = v
	}
	return m
}

// cdcChange is a change as the file holds it.
type cdcChange struct {
	Op     string           `json:"op"`
	LSN    string           `json:"lsn"`
	Before map[string]int64 `json:"before"`
	After  map[string]int64 `json:"after"`
}

func readChanges(t *testing.T, path string) []cdcChange {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []cdcChange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var c cdcChange
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}

// check compares, key by key, the changes of the file with those written,
// in order: a change missing, doubled or out of order fails.
func (w *cdcWriter) check(t *testing.T, got []cdcChange) proctest.Tallied {
	w.mu.Lock()
	defer w.mu.Unlock()
	have := map[int][]string{}
	for _, c := range got {
		switch c.Op {
		case "insert":
			have[int(c.After["id"])] = append(have[int(c.After["id"])], fmt.Sprintf("i:%d", c.After["v"]))
		case "update":
			have[int(c.After["id"])] = append(have[int(c.After["id"])], fmt.Sprintf("u:%d", c.After["v"]))
		case "delete":
			have[int(c.Before["id"])] = append(have[int(c.Before["id"])], "d")
		default:
			t.Errorf("unexpected change %+v", c)
		}
	}
	tl := proctest.Tallied{Read: len(got)}
	for id := 1; id <= 40; id++ {
		want, have := w.want[id], have[id]
		if !slices.Equal(want, have) {
			t.Errorf("key %d: changes\n%s\nwant\n%s", id, strings.Join(have, " "), strings.Join(want, " "))
		}
		wc, hc := count(want), count(have)
		for k, n := range wc {
			switch {
			case hc[k] < n:
				tl.Missing += n - hc[k]
			case hc[k] > n:
				tl.Doubled += hc[k] - n
			}
		}
		for k, n := range hc {
			if wc[k] == 0 {
				tl.Extra += n
			}
		}
	}
	return tl
}

func count(l []string) map[string]int {
	m := map[string]int{}
	for _, s := range l {
		m[s]++
	}
	return m
}
