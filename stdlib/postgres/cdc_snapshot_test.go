package postgres

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// newSnapEnv is a cdcEnv whose publication and slot are named cdcsnap_*.
func newSnapEnv(t *testing.T) *cdcEnv {
	c := newCDCEnv(t)
	n := rand.IntN(1e9)
	c.pub, c.slot = fmt.Sprintf("cdcsnap_pub_%d", n), fmt.Sprintf("cdcsnap_slot_%d", n)
	t.Cleanup(func() { dropCDC(t, c.pub, c.slot) })
	return c
}

// openSnap opens a source with snapshot = initial over tables.
func (c *cdcEnv) openSnap(t *testing.T, resume stdlib.Resumer, tables ...string) *cdcSource {
	t.Helper()
	l := make([]any, len(tables))
	for i, x := range tables {
		l[i] = c.table(x)
	}
	s, err := c.open(t, map[string]any{"tables": l, "snapshot": "initial"}, resume)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapChange is a record as "op table key v".
func snapChange(r stdlib.Record) string {
	v := r.Value.(map[string]any)
	row, _ := v["after"].(map[string]any)
	if row == nil {
		row, _ = v["before"].(map[string]any)
	}
	return fmt.Sprintf("%s %s %v %v", v["op"], v["table"], r.Key, row["v"])
}

// TestCDCSnapshot checks the handoff: a new slot's snapshot reads every
// row as it was when the slot was created, in chunks and key order, each
// once (the table's last row at the done offset), then the stream gives
// exactly the changes made after, even those made while the snapshot was
// read.
func TestCDCSnapshot(t *testing.T) {
	c := newSnapEnv(t)
	const n = 2*cdcSnapshotChunk + 7
	c.exec("CREATE TABLE " + c.table("big") + " (id bigint PRIMARY KEY, v text)")
	c.exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, %d) g", c.table("big"), n))
	c.exec("CREATE TABLE " + c.table("comp") + " (a text, b int, v int, PRIMARY KEY (a, b))")
	c.exec("INSERT INTO " + c.table("comp") + " VALUES ('x', 2, 1), ('x', 1, 2), ('a', 9, 3)")
	c.exec("CREATE TABLE " + c.table("empty") + " (id int PRIMARY KEY, v int)")
	s := c.openSnap(t, nil, "big", "comp", "empty")
	if s.snap == nil || !s.snap.consistent {
		t.Fatal("a new slot is not read in its exported snapshot")
	}
	// Changes made after the slot's consistent point, before and while
	// the snapshot is read, come from the stream only.
	c.exec("UPDATE " + c.table("big") + " SET v = 'changed' WHERE id = 1")
	c.exec("DELETE FROM " + c.table("big") + " WHERE id = 2")
	first := readCDC(t, s, cdcSnapshotChunk)
	c.exec(fmt.Sprintf("INSERT INTO %s VALUES (%d, 'new')", c.table("big"), n+1))
	c.exec("INSERT INTO " + c.table("empty") + " VALUES (1, 1)")
	recs := append(first, readCDC(t, s, n+3+4-len(first))...)
	reads := recs[:n+3]
	for i := range n {
		r := reads[i]
		want := fmt.Sprintf("read %s.big map[id:%d] v%d", c.schema, i+1, i+1)
		if got := snapChange(r); got != want {
			t.Fatalf("snapshot record %d: %s, want %s", i, got, want)
		}
		wantOff := int64(i + 1)
		if i == n-1 {
			wantOff = cdcSnapshotDone
		}
		if r.Pos.Partition != "snapshot:"+c.schema+".big" || r.Pos.Offset != wantOff {
			t.Fatalf("snapshot record %d at %v, want offset %d", i, r.Pos, wantOff)
		}
	}
	var comp []string
	for _, r := range reads[n:] {
		comp = append(comp, fmt.Sprintf("%s@%d", snapChange(r), r.Pos.Offset))
	}
	wantComp := []string{
		fmt.Sprintf("read %s.comp map[a:a b:9] 3@0", c.schema),
		fmt.Sprintf("read %s.comp map[a:x b:1] 2@1", c.schema),
		fmt.Sprintf("read %s.comp map[a:x b:2] 1@%d", c.schema, int64(cdcSnapshotDone)),
	}
	if fmt.Sprint(comp) != fmt.Sprint(wantComp) {
		t.Fatalf("composite key table: %v, want %v", comp, wantComp)
	}
	var stream []string
	for _, r := range recs[n+3:] {
		stream = append(stream, snapChange(r))
	}
	want := []string{
		fmt.Sprintf("update %s.big map[id:1] changed", c.schema),
		fmt.Sprintf("delete %s.big map[id:2] <nil>", c.schema),
		fmt.Sprintf("insert %s.big map[id:%d] new", c.schema, n+1),
		fmt.Sprintf("insert %s.empty map[id:1] 1", c.schema),
	}
	if fmt.Sprint(stream) != fmt.Sprint(want) {
		t.Fatalf("stream after the snapshot:\n%v\nwant\n%v", stream, want)
	}
}

// TestCDCSnapshotResume checks a snapshot interrupted after its first
// chunk: reopened from that chunk's position it reads on after the
// chunk's last key, with the rows as they are now, and the stream from
// the slot's consistent point gives every change since; a table read
// whole (done position) is not read again, and once the slot's partition
// holds a position there is no snapshot at all.
func TestCDCSnapshotResume(t *testing.T) {
	c := newSnapEnv(t)
	const n = cdcSnapshotChunk + 10
	c.exec("CREATE TABLE " + c.table("a") + " (id int PRIMARY KEY, v text)")
	c.exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, %d) g", c.table("a"), n))
	c.exec("CREATE TABLE " + c.table("b") + " (id int PRIMARY KEY, v text)")
	c.exec("INSERT INTO " + c.table("b") + " VALUES (1, 'b1')")
	s := c.openSnap(t, nil, "a", "b")
	chunk := readCDC(t, s, cdcSnapshotChunk)
	s.Close(t.Context()) // the exported snapshot is gone with its connection
	c.exec(fmt.Sprintf("UPDATE %s SET v = 'late' WHERE id IN (3, %d)", c.table("a"), n))
	c.exec(fmt.Sprintf("DELETE FROM %s WHERE id = %d", c.table("a"), n-1))

	pa, pb := snapshotPartition(c.schema+".a"), snapshotPartition(c.schema+".b")
	last := chunk[len(chunk)-1].Pos
	if last.Offset != cdcSnapshotChunk {
		t.Fatalf("first chunk ends at %v", last)
	}
	s = c.openSnap(t, stdlib.ResumeMap{pa: last.Offset}, "a", "b")
	if s.snap == nil || s.snap.consistent {
		t.Fatal("a resumed snapshot claims the exported snapshot")
	}
	recs := readCDC(t, s, 9+1+3)
	var got []string
	for _, r := range recs {
		got = append(got, snapChange(r))
	}
	var want []string
	for id := cdcSnapshotChunk + 1; id <= n; id++ {
		switch id {
		case n - 1: // deleted since: not read, its delete streams
		case n:
			want = append(want, fmt.Sprintf("read %s.a map[id:%d] late", c.schema, id))
		default:
			want = append(want, fmt.Sprintf("read %s.a map[id:%d] v%d", c.schema, id, id))
		}
	}
	want = append(want, fmt.Sprintf("read %s.b map[id:1] b1", c.schema),
		fmt.Sprintf("update %s.a map[id:3] late", c.schema),
		fmt.Sprintf("update %s.a map[id:%d] late", c.schema, n),
		fmt.Sprintf("delete %s.a map[id:%d] <nil>", c.schema, n-1))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resumed:\n%v\nwant\n%v", got, want)
	}
	s.Close(t.Context())

	// Both tables read whole: straight to the stream.
	s = c.openSnap(t, stdlib.ResumeMap{pa: cdcSnapshotDone, pb: cdcSnapshotDone}, "a", "b")
	if s.snap != nil {
		t.Fatal("a snapshot read whole is read again")
	}
	if got := snapChange(readCDC(t, s, 1)[0]); got != fmt.Sprintf("update %s.a map[id:3] late", c.schema) {
		t.Fatalf("after a whole snapshot: %s", got)
	}
	s.Close(t.Context())

	// A position of the stream: the snapshot was complete.
	s = c.openSnap(t, stdlib.ResumeMap{c.slot: recs[len(recs)-3].Pos.Offset}, "a", "b")
	if s.snap != nil {
		t.Fatal("a snapshot is read again after changes were streamed")
	}
	if got := snapChange(readCDC(t, s, 1)[0]); got != fmt.Sprintf("update %s.a map[id:%d] late", c.schema, n) {
		t.Fatalf("resumed in the stream: %s", got)
	}
}

// TestCDCSnapshotConnLost checks that a snapshot whose connection is lost
// (its exported snapshot with it) reads on after the last row emitted,
// with the rows as they are now, and that the stream still gives the
// change made meanwhile.
func TestCDCSnapshotConnLost(t *testing.T) {
	c := newSnapEnv(t)
	const n = cdcSnapshotChunk + 3
	c.exec("CREATE TABLE " + c.table("a") + " (id bigint PRIMARY KEY, v text)")
	c.exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, %d) g", c.table("a"), n))
	s := c.openSnap(t, nil, "a")
	first := readCDC(t, s, cdcSnapshotChunk)
	c.exec("SELECT pg_terminate_backend($1)", s.snap.conn.PgConn().PID())
	c.exec(fmt.Sprintf("UPDATE %s SET v = 'late' WHERE id = %d", c.table("a"), n))
	recs := readCDC(t, s, 3+1)
	if len(first) != cdcSnapshotChunk || s.snap != nil {
		t.Fatalf("%d records in the first chunk; snapshot left: %v", len(first), s.snap != nil)
	}
	var got []string
	for _, r := range recs {
		got = append(got, snapChange(r))
	}
	want := []string{
		fmt.Sprintf("read %s.a map[id:%d] v%d", c.schema, n-2, n-2),
		fmt.Sprintf("read %s.a map[id:%d] v%d", c.schema, n-1, n-1),
		fmt.Sprintf("read %s.a map[id:%d] late", c.schema, n),
		fmt.Sprintf("update %s.a map[id:%d] late", c.schema, n),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the lost connection:\n%v\nwant\n%v", got, want)
	}
}

// TestCDCSnapshotNoKey checks that a table without a primary key (its
// changes captured by REPLICA IDENTITY FULL) fails a snapshot with an
// error naming it and the way out, and streams with snapshot = never.
func TestCDCSnapshotNoKey(t *testing.T) {
	c := newSnapEnv(t)
	c.exec("CREATE TABLE " + c.table("nokey") + " (id int, v text)")
	c.exec("ALTER TABLE " + c.table("nokey") + " REPLICA IDENTITY FULL")
	_, err := c.open(t, map[string]any{"tables": []any{c.table("nokey")}, "snapshot": "initial"}, nil)
	want := fmt.Sprintf(`table "%s.nokey" has no primary key: its snapshot cannot be read in key order (add a primary key, or set snapshot = never)`, c.schema)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if _, err := c.open(t, map[string]any{"tables": []any{c.table("nokey")}}, nil); err != nil {
		t.Fatalf("with snapshot = never: %v", err)
	}
}

// TestCDCSnapshotResumeRows checks the resumption of a table whose key is
// not one integer column: its rows are read again from the first, numbered
// on after the position held, so that none is dropped as a replay.
func TestCDCSnapshotResumeRows(t *testing.T) {
	c := newSnapEnv(t)
	c.exec("CREATE TABLE " + c.table("comp") + " (a text, b int, v int, PRIMARY KEY (a, b))")
	c.exec("INSERT INTO " + c.table("comp") + " VALUES ('x', 1, 1), ('x', 2, 2), ('y', 1, 3)")
	s := c.openSnap(t, nil, "comp")
	first := readCDC(t, s, 3)
	s.Close(t.Context())
	if first[1].Pos.Offset != 1 {
		t.Fatalf("second row at %v", first[1].Pos)
	}
	c.exec("DELETE FROM " + c.table("comp") + " WHERE a = 'x' AND b = 1")
	s = c.openSnap(t, stdlib.ResumeMap{snapshotPartition(c.schema + ".comp"): first[1].Pos.Offset}, "comp")
	var got []string
	for _, r := range readCDC(t, s, 3) {
		if r.Pos.Partition == c.slot {
			got = append(got, snapChange(r))
			continue
		}
		got = append(got, fmt.Sprintf("%s@%d", snapChange(r), r.Pos.Offset))
	}
	want := []string{
		fmt.Sprintf("read %s.comp map[a:x b:2] 2@2", c.schema),
		fmt.Sprintf("read %s.comp map[a:y b:1] 3@%d", c.schema, int64(cdcSnapshotDone)),
		fmt.Sprintf("delete %s.comp map[a:x b:1] <nil>", c.schema),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resumed:\n%v\nwant\n%v", got, want)
	}
}

// TestCDCSnapshotHoldsQuietPositions: while no checkpoint covers a
// table's snapshot whole, heartbeats and keepalives do not move the slot
// from the consistent point the snapshot's positions are tied to (a
// restart would read the snapshot again under another identity, and
// sinks would take its rows again); the Commit covering the snapshot
// lets it go on.
func TestCDCSnapshotHoldsQuietPositions(t *testing.T) {
	c := newSnapEnv(t)
	c.exec("CREATE TABLE " + c.table("a") + " (id int PRIMARY KEY, v text)")
	c.exec("INSERT INTO " + c.table("a") + " VALUES (1, 'x'), (2, 'y')")
	c.exec("CREATE TABLE " + c.table("other") + " (id int PRIMARY KEY, v text)")
	s, err := c.open(t, map[string]any{"tables": []any{c.table("a")}, "snapshot": "initial", "heartbeat": 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := lsnOf(t, c.confirmed(t))
	recs := readCDC(t, s, 2)
	c.exec("INSERT INTO " + c.table("other") + " SELECT g, 'v' FROM generate_series(1, 1000) g")
	for range 5 { // the stream starts; heartbeats and keepalives go by
		if got, err := s.Read(t.Context()); err != nil || len(got) > 0 {
			t.Fatalf("read %v, %v", got, err)
		}
	}
	if got := lsnOf(t, c.confirmed(t)); got != start {
		t.Fatalf("slot confirmed %s before a checkpoint covered the snapshot read at %s", got, start)
	}
	var after string
	if err := c.conn.QueryRow(t.Context(), "SELECT pg_current_wal_lsn()::text").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(t.Context(), []stdlib.Position{recs[1].Pos}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for lsnOf(t, c.confirmed(t)) < lsnOf(t, after) {
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s after the snapshot's commit, want at least %s", c.confirmed(t), after)
		}
		if _, err := s.Read(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
