package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// cdcEnv is a test's schema plus a publication and a slot of its own,
// dropped at the end.
type cdcEnv struct {
	*pgEnv
	pub, slot string
}

func newCDCEnv(t *testing.T) *cdcEnv {
	e := newPG(t)
	var level string
	if err := e.conn.QueryRow(t.Context(), "SHOW wal_level").Scan(&level); err != nil || level != "logical" {
		t.Fatalf("the test server's wal_level is %q (%v): .ci/run sets it to logical", level, err)
	}
	n := rand.IntN(1e9)
	c := &cdcEnv{pgEnv: e, pub: fmt.Sprintf("pt_pub_%d", n), slot: fmt.Sprintf("pt_slot_%d", n)}
	t.Cleanup(func() { dropCDC(t, c.pub, c.slot) })
	return c
}

// dropCDC drops a publication and a slot (waiting for its walsender to
// go).
func dropCDC(t testing.TB, pub, slot string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Errorf("drop slot: %v", err)
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quote(pub))
	for {
		_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
		if err == nil || ctx.Err() != nil {
			if err != nil {
				t.Errorf("drop slot %s: %v", slot, err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond) // still active: its connection is closing
	}
}

// cdcConfig is the configuration of a source of c's publication and slot.
func cdcConfig(c *cdcEnv) stdlib.Config {
	a := map[string]any{}
	for _, p := range CDCSpec.Params {
		if p.Default != nil {
			a[p.Name] = p.Default
		}
	}
	a["dsn"], a["publication"], a["slot"] = testDSN(), c.pub, c.slot
	a["snapshot"] = "never"
	return stdlib.Config{Pipeline: "p", Stage: "cdc", Attrs: a, Tasks: 1, Logger: c.logger()}
}

func (c *cdcEnv) open(t *testing.T, attrs map[string]any, resume stdlib.Resumer) (*cdcSource, error) {
	a := map[string]any{}
	for _, p := range CDCSpec.Params {
		if p.Default != nil {
			a[p.Name] = p.Default
		}
	}
	a["dsn"], a["publication"], a["slot"] = testDSN(), c.pub, c.slot
	a["snapshot"] = "never" // the tests of the stream; cdc_snapshot_test.go sets initial
	for k, v := range attrs {
		a[k] = v
	}
	row, _ := a["schema"].(*types.Type) // the stage's declared schema
	delete(a, "schema")
	s, err := newCDC(stdlib.Config{Pipeline: "p", Stage: "cdc", Attrs: a, Tasks: 1, Logger: c.logger(), Schema: row})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, s.Open(t.Context(), resume)
}

func (c *cdcEnv) mustOpen(t *testing.T, resume stdlib.Resumer, tables ...string) *cdcSource {
	t.Helper()
	l := make([]any, len(tables))
	for i, x := range tables {
		l[i] = c.table(x)
	}
	s, err := c.open(t, map[string]any{"tables": l}, resume)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readCDC reads until n records came, failing after 20 s.
func readCDC(t *testing.T, s *cdcSource, n int) []stdlib.Record {
	t.Helper()
	var out []stdlib.Record
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d changes, want %d", len(out), n)
		}
		recs, err := s.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
	}
	return out
}

// show is "op table key before after" of a change.
func show(r stdlib.Record) string {
	m := r.Value.(map[string]any)
	tbl := m["table"].(string)
	return fmt.Sprintf("%s %s %v %v %v", m["op"], tbl[strings.IndexByte(tbl, '.')+1:], r.Key, m["before"], m["after"])
}

func TestCDCChanges(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("a") + " (id int PRIMARY KEY, name text, n bigint)")
	c.exec("CREATE TABLE " + c.table("f") + " (id int PRIMARY KEY, name text)")
	c.exec("ALTER TABLE " + c.table("f") + " REPLICA IDENTITY FULL")
	s := c.mustOpen(t, nil, "a", "f")
	if s.identity == "" || !strings.HasSuffix(s.identity, " slot "+c.slot) || !strings.HasPrefix(s.identity, "system ") {
		t.Fatalf("identity %q", s.identity)
	}
	c.exec("BEGIN; INSERT INTO " + c.table("a") + " VALUES (1, 'x', 10), (2, 'y', 20); INSERT INTO " + c.table("f") + " VALUES (7, 'f'); COMMIT")
	c.exec("UPDATE " + c.table("a") + " SET name = 'x2' WHERE id = 1")
	c.exec("UPDATE " + c.table("f") + " SET name = 'f2' WHERE id = 7")
	c.exec("DELETE FROM " + c.table("a") + " WHERE id = 2")
	c.exec("DELETE FROM " + c.table("f") + " WHERE id = 7")
	c.exec("TRUNCATE " + c.table("a"))
	recs := readCDC(t, s, 8)
	want := []string{
		"insert a map[id:1] <nil> map[id:1 n:10 name:x]",
		"insert a map[id:2] <nil> map[id:2 n:20 name:y]",
		"insert f map[id:7] <nil> map[id:7 name:f]",
		"update a map[id:1] <nil> map[id:1 n:10 name:x2]",
		"update f map[id:7] map[id:7 name:f] map[id:7 name:f2]",
		"delete a map[id:2] map[id:2] <nil>",
		"delete f map[id:7] map[id:7 name:f2] <nil>",
		"truncate a <nil> <nil> <nil>",
	}
	var got []string
	for _, r := range recs {
		got = append(got, show(r))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	first := recs[0].Value.(map[string]any)
	if recs[1].Value.(map[string]any)["xid"] != first["xid"] || recs[1].Value.(map[string]any)["lsn"] != first["lsn"] ||
		recs[3].Value.(map[string]any)["xid"] == first["xid"] {
		t.Errorf("transaction ids / commit LSNs: %v %v", first, recs[1].Value)
	}
	if ct, _ := first["commit_time"].(time.Time); time.Since(ct) > time.Minute || !recs[0].Time.Equal(ct) {
		t.Errorf("commit time %v, record time %v", first["commit_time"], recs[0].Time)
	}
	for i, r := range recs {
		if r.Pos.Partition != c.slot || r.Pos.Identity != s.identity || r.Pos.Source != "cdc" {
			t.Errorf("position %v", r.Pos)
		}
		if i > 0 && r.Pos.Offset <= recs[i-1].Pos.Offset {
			t.Errorf("offset %d after %d", r.Pos.Offset, recs[i-1].Pos.Offset)
		}
		if m := stdlib.Meta(&r); m["offset"] != r.Pos.Offset || !reflect.DeepEqual(m["key"], r.Key) {
			t.Errorf("meta %v", m)
		}
	}
	if recs[0].Pos.Offset>>CDCIndexBits != recs[1].Pos.Offset>>CDCIndexBits || recs[0].Pos.Offset&0xffff != 1 || recs[1].Pos.Offset&0xffff != 2 {
		t.Errorf("offsets of one transaction: %x %x", recs[0].Pos.Offset, recs[1].Pos.Offset)
	}
}

// confirmed returns the slot's confirmed flush LSN.
func (c *cdcEnv) confirmed(t *testing.T) string {
	var lsn string
	if err := c.conn.QueryRow(t.Context(), "SELECT coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = $1", c.slot).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// TestCDCCommit checks that the slot advances on Commit only: a source
// reopened without a Commit gets every change again; after a Commit it
// gets the changes from the committed transaction on, and one resumed
// from a position skips what the position covers.
func TestCDCCommit(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("a") + " (id int PRIMARY KEY, v text)")
	s := c.mustOpen(t, nil, "a")
	start := c.confirmed(t)
	for i := 1; i <= 4; i++ {
		c.exec(fmt.Sprintf("INSERT INTO %s VALUES (%d, 'v')", c.table("a"), i))
	}
	recs := readCDC(t, s, 4)
	time.Sleep(1500 * time.Millisecond) // keepalives and an idle Read go by
	if _, err := s.Read(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, first := lsnOf(t, c.confirmed(t)), lsnOf(t, recs[0].Value.(map[string]any)["lsn"].(string)); got > first {
		t.Fatalf("slot confirmed %s before any Commit, past the first change at %s (was %s)", got, first, start)
	}
	s.Close(t.Context())
	s = c.mustOpen(t, nil, "a")
	again := readCDC(t, s, 4)
	if !reflect.DeepEqual(keys(again), keys(recs)) || again[3].Pos != recs[3].Pos {
		t.Fatalf("after a reopen without Commit: %v, want %v", keys(again), keys(recs))
	}
	if err := s.Commit(t.Context(), []stdlib.Position{again[2].Pos}); err != nil {
		t.Fatal(err)
	}
	lsn := again[2].Value.(map[string]any)["lsn"].(string)
	deadline := time.Now().Add(5 * time.Second)
	for c.confirmed(t) != lsn {
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s after Commit, want %s", c.confirmed(t), lsn)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Close(t.Context())
	s = c.mustOpen(t, nil, "a")
	if got := keys(readCDC(t, s, 2)); !reflect.DeepEqual(got, []string{"map[id:3]", "map[id:4]"}) {
		t.Fatalf("after Commit of the 3rd change: %v", got)
	}
	s.Close(t.Context())
	s = c.mustOpen(t, stdlib.ResumeMap{c.slot: again[2].Pos.Offset}, "a")
	if got := keys(readCDC(t, s, 1)); !reflect.DeepEqual(got, []string{"map[id:4]"}) {
		t.Fatalf("resumed after the 3rd change: %v", got)
	}
}

func lsnOf(t *testing.T, s string) pglogrepl.LSN {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// TestCDCHeartbeat checks that the slot advances while the captured table
// is idle and other tables are written, without any record, and that a
// quiet position waits for the Commit of the changes emitted before it.
func TestCDCHeartbeat(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("a") + " (id int PRIMARY KEY, v text)")
	c.exec("CREATE TABLE " + c.table("other") + " (id int PRIMARY KEY, v text)")
	s, err := c.open(t, map[string]any{"tables": []any{c.table("a")}, "heartbeat": 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	current := func() pglogrepl.LSN {
		var at string
		if err := c.conn.QueryRow(t.Context(), "SELECT pg_current_wal_lsn()::text").Scan(&at); err != nil {
			t.Fatal(err)
		}
		return lsnOf(t, at)
	}
	// readUntil reads until the slot confirmed at least want.
	readUntil := func(want pglogrepl.LSN) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for lsnOf(t, c.confirmed(t)) < want {
			if time.Now().After(deadline) {
				t.Fatalf("slot confirmed %s, want at least %s", c.confirmed(t), want)
			}
			recs, err := s.Read(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) > 0 {
				t.Fatalf("records from the idle table: %v", keys(recs))
			}
		}
	}
	for i := range 5 {
		c.exec(fmt.Sprintf("INSERT INTO %s SELECT g, repeat('x', 200) FROM generate_series(%d, %d) g", c.table("other"), i*1000, i*1000+999))
		readUntil(current())
	}
	if l := s.Lag(t.Context()); len(l) != 1 || l[0].Unit != "bytes" || l[0].Partition != c.slot || l[0].Behind < 0 || l[0].Behind > 1<<20 {
		t.Errorf("lag %v", l)
	}

	// A change emitted and not yet covered by a checkpoint holds the slot
	// back; its Commit lets it go past the quiet position seen since.
	c.exec("INSERT INTO " + c.table("a") + " VALUES (1, 'v')")
	recs := readCDC(t, s, 1)
	c.exec("INSERT INTO " + c.table("other") + " VALUES (-1, 'v')")
	after := current()
	for range 3 { // heartbeats and keepalives go by
		if got, err := s.Read(t.Context()); err != nil || len(got) > 0 {
			t.Fatalf("read %v, %v", got, err)
		}
	}
	if got, first := lsnOf(t, c.confirmed(t)), lsnOf(t, recs[0].Value.(map[string]any)["lsn"].(string)); got > first {
		t.Fatalf("slot confirmed %s past the change at %s a checkpoint does not cover", got, first)
	}
	if err := s.Commit(t.Context(), []stdlib.Position{recs[0].Pos}); err != nil {
		t.Fatal(err)
	}
	readUntil(after)

	// pipe offsets show: the slot's confirmed position as the last done.
	holder, ps, err := s.ReportPositions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	lsn := lsnOf(t, c.confirmed(t))
	if len(ps) != 1 || ps[0] != (stdlib.Position{Source: "cdc", Partition: c.slot, Offset: int64(lsn) << CDCIndexBits, Identity: s.identity}) ||
		!strings.Contains(holder, "replication slot "+c.slot+", confirmed flush LSN "+lsn.String()) {
		t.Errorf("reported %q %v", holder, ps)
	}
}

func keys(recs []stdlib.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprint(r.Key))
	}
	return out
}

// TestCDCToast checks that an unchanged TOAST value is never turned into
// null: the change is a record error, unless REPLICA IDENTITY FULL gives
// the value.
func TestCDCToast(t *testing.T) {
	c := newCDCEnv(t)
	for _, tb := range []string{"d", "f"} {
		c.exec("CREATE TABLE " + c.table(tb) + " (id int PRIMARY KEY, big text, n int)")
		c.exec("ALTER TABLE " + c.table(tb) + " ALTER COLUMN big SET STORAGE EXTERNAL")
	}
	c.exec("ALTER TABLE " + c.table("f") + " REPLICA IDENTITY FULL")
	s := c.mustOpen(t, nil, "d", "f")
	big := strings.Repeat("0123456789", 1000)
	for _, tb := range []string{"d", "f"} {
		c.exec("INSERT INTO "+c.table(tb)+" VALUES (1, $1, 1)", big)
		c.exec("UPDATE " + c.table(tb) + " SET n = 2")
	}
	recs := readCDC(t, s, 4)
	if recs[1].Err == nil || !strings.Contains(recs[1].Err.Error(), `column "big" is an unchanged TOAST value`) {
		t.Errorf("update of d: err %v, value %v", recs[1].Err, recs[1].Value)
	}
	if recs[3].Err != nil || recs[3].Value.(map[string]any)["after"].(map[string]any)["big"] != big {
		t.Errorf("update of f (replica identity full): err %v", recs[3].Err)
	}
}

// TestCDCErrors checks the errors naming what is missing.
func TestCDCErrors(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("nokey") + " (v text)")
	c.exec("CREATE TABLE " + c.table("ok") + " (id int PRIMARY KEY)")
	_, err := c.open(t, map[string]any{"tables": []any{c.table("nokey")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "has no primary key and no replica identity") {
		t.Errorf("table without a key: %v", err)
	}
	_, err = c.open(t, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "does not exist: list the tables") {
		t.Errorf("no publication, no tables: %v", err)
	}
	role := fmt.Sprintf("pt_norepl_%d", rand.IntN(1e9))
	c.exec("CREATE ROLE " + role + " LOGIN")
	t.Cleanup(func() { c.conn.Exec(context.Background(), "DROP ROLE "+role) })
	_, err = c.open(t, map[string]any{"dsn": "postgres://" + role + "@127.0.0.1:5432/test?sslmode=disable",
		"tables": []any{c.table("ok")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "has no REPLICATION privilege") {
		t.Errorf("role without REPLICATION: %v", err)
	}
	// Fill max_replication_slots with physical slots.
	var used, max int
	if err := c.conn.QueryRow(t.Context(), "SELECT (SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int").Scan(&used, &max); err != nil {
		t.Fatal(err)
	}
	var filler []string
	t.Cleanup(func() {
		for _, f := range filler {
			c.conn.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", f)
		}
	})
	for i := used; i < max; i++ {
		f := fmt.Sprintf("%s_fill%d", c.slot, i)
		if _, err := c.conn.Exec(t.Context(), "SELECT pg_create_physical_replication_slot($1)", f); err != nil {
			t.Fatal(err)
		}
		filler = append(filler, f)
	}
	_, err = c.open(t, map[string]any{"tables": []any{c.table("ok")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "max_replication_slots") {
		t.Errorf("no free slot: %v", err)
	}
}

// TestCDCCheckErrors checks the errors of the server's answers that the
// test server cannot give (its wal_level is logical, its role a
// superuser).
func TestCDCCheckErrors(t *testing.T) {
	if err := checkWALLevel("logical"); err != nil {
		t.Errorf("logical: %v", err)
	}
	for _, level := range []string{"replica", "minimal"} {
		err := checkWALLevel(level)
		if err == nil || !strings.Contains(err.Error(), `wal_level is "`+level+`"`) || !strings.Contains(err.Error(), "ALTER SYSTEM SET wal_level = logical") {
			t.Errorf("%s: %v", level, err)
		}
	}
	if err := checkReplication("app", true); err != nil {
		t.Errorf("replication: %v", err)
	}
	if err := checkReplication("app", false); err == nil || err.Error() != `role "app" has no REPLICATION privilege: change data capture needs it (ALTER ROLE "app" REPLICATION)` {
		t.Errorf("no replication: %v", err)
	}
}

// TestCDCReplicaIdentityNothing checks that a table whose replica identity
// is NOTHING is refused even with a primary key.
func TestCDCReplicaIdentityNothing(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("n") + " (id int PRIMARY KEY)")
	c.exec("ALTER TABLE " + c.table("n") + " REPLICA IDENTITY NOTHING")
	_, err := c.open(t, map[string]any{"tables": []any{c.table("n")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "has no primary key and no replica identity") {
		t.Errorf("replica identity nothing: %v", err)
	}
}
