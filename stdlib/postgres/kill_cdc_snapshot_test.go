package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pipe.dev/pipe/internal/proctest"
)

// cdcSnapKillPipe replicates three captured tables into a schema of
// replicas: the initial snapshot, then every change, upserted and
// deleted by key, exactly once.
const cdcSnapKillPipe = `pipeline cdcsnap_kill {
  delivery   = exactly_once
  checkpoint = 500ms
}

def transform row(): map {
  drop op, table, xid, lsn, commit_time, before, after
  id: int       := int((op == "delete" ? before ?? {} : after ?? {})["id"])
  v: int?       := op == "delete" ? nil : (after ?? {})["v"]
  note: string? := op == "delete" ? nil : (after ?? {})["note"]
  __op          := op
}

def sink replica(name: string): postgres {
  dsn           = "${env:PG_URL}"
  table         = "${env:DST}.${param:name}"
  mode          = upsert
  key           = ["id"]
  offsets_table = "${env:DST}.pipe_offsets"
}

source changes: postgres_cdc {
  dsn         = "${env:PG_URL}"
  publication = "${env:PUB}"
  slot        = "${env:SLOT}"
  tables      = ["${env:SRC}.big", "${env:SRC}.t2", "${env:SRC}.t3"]
  snapshot    = initial
}

transform by_table: route {
  case big when table endsWith ".big"
  case t2 when table endsWith ".t2"
  case t3 when table endsWith ".t3"
}

transform row_big: row()
transform row_t2: row()
transform row_t3: row()

sink big: replica(name = "big")
sink t2: replica(name = "t2")
sink t3: replica(name = "t3")

changes -> by_table
by_table.big -> row_big -> big
by_table.t2 -> row_t2 -> t2
by_table.t3 -> row_t3 -> t3
`

// cdcSnapTables are the captured tables, each with the range of ids the
// workload writes.
var cdcSnapTables = []struct {
	name string
	ids  int
}{{"big", 220000}, {"t2", 2000}, {"t3", 2000}}

// cdcSnapBigRows is how many rows the big table holds before the first
// start: its snapshot spans several runs, so that kills hit it.
const cdcSnapBigRows = 200000

// TestKillCDCSnapshot runs a postgres_cdc -> postgres replica pipeline
// (three tables, one of 200,000 rows before the first start) under `pipe
// run` while writers insert, update and delete rows of every table
// concurrently, SIGKILLs it at random moments, the first ones during the
// snapshot and the last third once the snapshot is durable, and checks at the end that each replica table equals its
// source row for row (a hash per table, then the rows that differ). Set
// PIPE_KILLTEST=1 to run it; PIPE_KILLTEST_KILLS above 20 scales it.
func TestKillCDCSnapshot(t *testing.T) {
	_, kills := proctest.KillTest(t, 0, 20)
	kills = max(kills, 20) // at least 20, in CI too (which asks 12 of the other kill tests)
	e := newPG(t)
	n := rand.IntN(1e9)
	src, dst := fmt.Sprintf("cdcsnap_src_%d", n), fmt.Sprintf("cdcsnap_dst_%d", n)
	pub, slot := fmt.Sprintf("cdcsnap_kpub_%d", n), fmt.Sprintf("cdcsnap_kslot_%d", n)
	t.Cleanup(func() {
		dropCDC(t, pub, slot)
		for _, s := range []string{src, dst} {
			e.conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+quote(s)+" CASCADE")
		}
	})
	e.exec("CREATE SCHEMA " + quote(src))
	e.exec("CREATE SCHEMA " + quote(dst))
	for _, tb := range cdcSnapTables {
		for _, s := range []string{src, dst} {
			e.exec("CREATE TABLE " + quote(s) + "." + tb.name + " (id bigint PRIMARY KEY, v bigint, note text)")
		}
	}
	e.exec(fmt.Sprintf("INSERT INTO %s.big SELECT g, g * 7, 'row ' || g FROM generate_series(1, %d) g", quote(src), cdcSnapBigRows))
	e.exec(fmt.Sprintf("INSERT INTO %s.t2 SELECT g, g, 'r' FROM generate_series(1, 500) g", quote(src)))

	kill := proctest.NewKill(t, proctest.BuildPipe(t), "cdcsnap", cdcSnapKillPipe)
	// A kill while the big table's snapshot is not yet durable in its
	// replica (the sink holds no done position of it).
	var duringSnapshot atomic.Int32
	snapshotDone := func() bool {
		var off int64
		err := e.conn.QueryRow(t.Context(), "SELECT \"offset\" FROM "+quote(dst)+".pipe_offsets WHERE sink = 'big' AND partition = $1",
			snapshotPartition(src+".big")).Scan(&off)
		return err == nil && off == cdcSnapshotDone
	}
	runs := 0
	// The writers go on until the last killed run started (at least
	// span), so that the kills of the stream come while changes arrive.
	span := time.Duration(kills) * 2 * time.Second
	var lastKilled atomic.Bool
	var written atomic.Int64
	kill.Kills = kills
	kill.Env = []string{"PG_URL=" + testDSN(), "PUB=" + pub, "SLOT=" + slot, "SRC=" + src, "DST=" + dst}
	kill.Life = func() time.Duration {
		runs++
		lastKilled.Store(runs >= kills)
		switch {
		case runs <= 3: // the snapshot of the big table takes a few runs
			return time.Duration(1000+rand.IntN(1000)) * time.Millisecond
		case runs > kills*2/3 && !snapshotDone():
			// A loaded machine: this run lives until the snapshot is
			// durable (30 s at most), so that the last kills hit the
			// stream. Life is called once the run started.
			for end := time.Now().Add(30 * time.Second); !snapshotDone() && time.Now().Before(end); {
				time.Sleep(200 * time.Millisecond)
			}
			return time.Duration(500+rand.IntN(1000)) * time.Millisecond
		}
		return time.Duration(1000+rand.IntN(3000)) * time.Millisecond
	}
	kill.Produce = func() error { return cdcSnapWorkload(src, span, &lastKilled, &written) }
	kill.Progress = func() string {
		done := snapshotDone()
		if !done {
			duringSnapshot.Add(1)
		}
		return fmt.Sprintf("%d replica rows of big, snapshot durable: %v; %d changes written", e.count(quote(dst)+".big"), done, written.Load())
	}
	kill.Complete = func(t *testing.T) {
		deadline := time.Now().Add(90 * time.Second)
		for !cdcSnapSame(t, e, src, dst) && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
		}
	}
	kill.Check = func(t *testing.T) proctest.Tallied {
		var tl proctest.Tallied
		for _, tb := range cdcSnapTables {
			s, d := quote(src)+"."+tb.name, quote(dst)+"."+tb.name
			if hs, hd := tableHash(t, e, s), tableHash(t, e, d); hs != hd {
				t.Errorf("table %s: hash %s, replica %s", tb.name, hs, hd)
			}
			var read, missing, extra int
			err := e.conn.QueryRow(t.Context(), `SELECT
  (SELECT count(*) FROM `+d+`),
  (SELECT count(*) FROM `+s+` s WHERE NOT EXISTS (SELECT 1 FROM `+d+` d WHERE d.id = s.id AND d.v IS NOT DISTINCT FROM s.v AND d.note IS NOT DISTINCT FROM s.note)),
  (SELECT count(*) FROM `+d+` d WHERE NOT EXISTS (SELECT 1 FROM `+s+` s WHERE s.id = d.id))`).Scan(&read, &missing, &extra)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("table %s: %d rows in the replica, %d missing or different, %d not in the source", tb.name, read, missing, extra)
			tl.Read += read
			tl.Missing += missing
			tl.Extra += extra
		}
		return tl
	}
	kill.Run(t)
	if kills > 1 && duringSnapshot.Load() == 0 {
		t.Errorf("no kill came while the snapshot of the big table was not durable")
	}
	t.Logf("%d kills during the snapshot, %d changes written", duringSnapshot.Load(), written.Load())
}

// tableHash is the md5 of a table's rows in key order.
func tableHash(t *testing.T, e *pgEnv, table string) string {
	var h *string
	err := e.conn.QueryRow(t.Context(), "SELECT md5(string_agg(id || ':' || coalesce(v::text, '-') || ':' || coalesce(note, '-'), ',' ORDER BY id)) FROM "+table).Scan(&h)
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		return "(empty)"
	}
	return *h
}

// cdcSnapSame says whether every replica table has its source's hash.
func cdcSnapSame(t *testing.T, e *pgEnv, src, dst string) bool {
	for _, tb := range cdcSnapTables {
		if tableHash(t, e, quote(src)+"."+tb.name) != tableHash(t, e, quote(dst)+"."+tb.name) {
			return false
		}
	}
	return true
}

// cdcSnapWorkload runs three writers for span and until done is set (two
// minutes at most): transactions of one to three upserts, updates and
// deletes of random rows of random tables.
// Transactions that deadlock with one another are rolled back.
func cdcSnapWorkload(src string, span time.Duration, done *atomic.Bool, written *atomic.Int64) error {
	ctx := context.Background()
	start := time.Now()
	more := func() bool {
		return time.Since(start) < span || !done.Load() && time.Since(start) < 2*time.Minute
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, testDSN())
			if err != nil {
				errs[w] = err
				return
			}
			defer conn.Close(ctx)
			seq := int64(w) << 40
			for more() {
				tx, err := conn.Begin(ctx)
				if err != nil {
					errs[w] = err
					return
				}
				ops := 1 + rand.IntN(3)
				for range ops {
					tb := cdcSnapTables[rand.IntN(len(cdcSnapTables))]
					table := quote(src) + "." + tb.name
					id := 1 + rand.IntN(tb.ids)
					seq++
					var sql string
					switch rand.IntN(5) {
					case 0, 1:
						sql = fmt.Sprintf("INSERT INTO %s VALUES (%d, %d, 'w%d') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note", table, id, seq, w)
					case 2, 3:
						sql = fmt.Sprintf("UPDATE %s SET v = %d WHERE id = %d", table, seq, id)
					default:
						sql = fmt.Sprintf("DELETE FROM %s WHERE id = %d", table, id)
					}
					if _, err = tx.Exec(ctx, sql); err != nil {
						break
					}
				}
				if err == nil {
					err = tx.Commit(ctx)
				} else {
					tx.Rollback(ctx)
				}
				if err != nil && !transient(err) {
					errs[w] = err
					return
				}
				if err == nil {
					written.Add(int64(ops))
				}
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
