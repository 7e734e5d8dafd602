package mysql

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// TestSinkInsertCreateTable creates the table from the record type, writes
// exactly once, and holds the checkpoint's positions after a reopen;
// records of an unfinished transaction are gone after a Close.
func TestSinkInsertCreateTable(t *testing.T) {
	e := newMy(t)
	cfg := e.sinkConfig(map[string]any{"table": "ev", "create_table": true, "key": []any{"id"}}, eventType, stdlib.ExactlyOnce)
	s, held := e.openSink(cfg)
	if len(held) != 0 {
		t.Fatalf("held %v on a new table", held)
	}
	if err := s.Write(t.Context(), events(0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(99)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), events(100, 150)); err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context()) // without a checkpoint: rolled back
	if n := e.count("ev"); n != 100 {
		t.Fatalf("%d rows, want 100", n)
	}
	got := e.rows("SELECT id, user, amount, country, event, ts FROM ev WHERE id = 42")
	if want := "id=42 user=u42 amount=0.42 country=NL event=purchase ts=2024-01-01T00:00:42Z"; got[0] != want {
		t.Fatalf("row %s, want %s", got[0], want)
	}
	types := e.rows("SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '" + e.name + "' AND TABLE_NAME = 'ev' ORDER BY ORDINAL_POSITION")
	if !strings.Contains(types[0], "COLUMN_TYPE=bigint(20) COLUMN_KEY=PRI") || !strings.Contains(types[5], "datetime(6)") {
		t.Fatalf("columns %v", types)
	}
	_, held = e.openSink(cfg)
	if !slices.Equal(held, []stdlib.Position{{Source: "in", Partition: "p0", Offset: 99}}) {
		t.Fatalf("held %v, want in[p0]@99", held)
	}
}

// TestSinkUpsertAndDeletes upserts by key, deletes by tombstone and by
// __op = "delete"; the last record of a key in a batch wins.
func TestSinkUpsertAndDeletes(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE kv (k varchar(20) PRIMARY KEY, v bigint, note text)")
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": "kv", "mode": stdlib.Ident("upsert")}, nil, stdlib.AtLeastOnce))
	rec := func(v any, key any) stdlib.Record { return stdlib.Record{Value: v, Key: key, Partition: -1} }
	batch := []stdlib.Record{
		rec(map[string]any{"k": "a", "v": int64(1), "note": "first"}, nil),
		rec(map[string]any{"k": "b", "v": int64(2)}, nil),
		rec(map[string]any{"k": "c", "v": int64(3)}, nil),
		rec(map[string]any{"k": "a", "v": int64(10), "note": "second"}, nil),
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	batch = []stdlib.Record{
		rec(nil, []byte("b")), // tombstone
		rec(map[string]any{"k": "c", "__op": "delete"}, nil),
		rec(map[string]any{"k": "d", "v": int64(4)}, nil),
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 2}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT k, v, note FROM kv ORDER BY k")
	want := []string{"k=a v=10 note=second", "k=d v=4 note=<nil>"}
	if !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
}

// TestSinkDeleteMode deletes by a two-column key.
func TestSinkDeleteMode(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE t2 (a int, b varchar(10), v int, PRIMARY KEY (a, b))")
	e.exec("INSERT INTO t2 VALUES (1, 'x', 1), (1, 'y', 2), (2, 'x', 3)")
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": "t2", "mode": stdlib.Ident("delete")}, nil, stdlib.ExactlyOnce))
	err := s.Write(t.Context(), []stdlib.Record{
		{Value: map[string]any{"a": int64(1), "b": "y"}, Partition: -1},
		{Value: map[string]any{"a": int64(2), "b": "x", "v": int64(99)}, Partition: -1},
		{Value: map[string]any{"a": int64(3), "b": "z"}, Partition: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(3)}); err != nil {
		t.Fatal(err)
	}
	if got := e.rows("SELECT a, b, v FROM t2"); !slices.Equal(got, []string{"a=1 b=x v=1"}) {
		t.Fatalf("rows %v", got)
	}
}

// TestSinkRecordErrors: a value too long for its column is rejected before
// it is sent; a duplicate key in insert mode and a CHECK violation are
// rejected by the server and found among the batch's rows; the other rows
// are written, and the run goes on.
func TestSinkRecordErrors(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE r (id int PRIMARY KEY, name varchar(5) NOT NULL, n int CHECK (n >= 0))")
	e.exec("INSERT INTO r VALUES (100, 'old', 1)")
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": "r"}, nil, stdlib.ExactlyOnce))
	rec := func(id int64, name string, n int64) stdlib.Record {
		return stdlib.Record{Value: map[string]any{"id": id, "name": name, "n": n}, Partition: -1}
	}
	batch := []stdlib.Record{
		rec(1, "a", 1), rec(2, "toolong", 1), rec(3, "c", 1), rec(100, "dup", 1),
		rec(4, "d", -5), rec(5, "e", 1), rec(6, "f", 1), rec(6, "g", 1),
	}
	err := s.Write(t.Context(), batch)
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) {
		t.Fatalf("Write: %v, want record errors", err)
	}
	var idx []int
	var msgs []string
	for _, re := range rerrs {
		idx = append(idx, re.Index)
		msgs = append(msgs, re.Err.Error())
	}
	if !slices.Equal(idx, []int{1, 3, 4, 7}) {
		t.Fatalf("rejected %v (%v), want 1 3 4 7", idx, msgs)
	}
	if !strings.Contains(msgs[0], "too long") || !strings.Contains(msgs[1], "Duplicate entry") ||
		!strings.Contains(msgs[2], "CONSTRAINT") || !strings.Contains(msgs[3], "Duplicate entry") {
		t.Fatalf("messages: %q", msgs)
	}
	if err := s.Write(t.Context(), []stdlib.Record{rec(7, "h", 1)}); err != nil {
		t.Fatalf("Write after rejections: %v", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(1)}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT id, name FROM r ORDER BY id")
	want := []string{"id=1 name=a", "id=3 name=c", "id=5 name=e", "id=6 name=f", "id=7 name=h", "id=100 name=old"}
	if !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
}

// TestSinkColumnsChecked: the record type is checked against the columns
// at Open; evolve = add_columns adds what is missing, at Open and for
// untyped records in Write.
func TestSinkColumnsChecked(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE c (id bigint PRIMARY KEY, user varchar(10), must int NOT NULL)")
	typ := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "user", Type: types.IntType},
		&types.Field{Name: "extra", Type: types.StringType})
	s, err := newSink(e.sinkConfig(map[string]any{"table": "c"}, typ, stdlib.ExactlyOnce))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Open(t.Context())
	if err == nil {
		t.Fatal("Open accepted records that do not fit the table")
	}
	for _, want := range []string{`field "extra" has no column`, `column "must" of table`, `field "user" (int) does not fit column "user" (varchar(10))`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open: %v\nwant %q", err, want)
		}
	}
	e.exec("ALTER TABLE c DROP COLUMN must, MODIFY user bigint")
	s2, _ := e.openSink(e.sinkConfig(map[string]any{"table": "c", "evolve": stdlib.Ident("add_columns")}, typ, stdlib.ExactlyOnce))
	if got := e.rows("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '" + e.name + "' AND TABLE_NAME = 'c' AND COLUMN_NAME = 'extra'"); len(got) != 1 {
		t.Fatalf("evolve at Open did not add extra: %v", got)
	}
	s2.Close(t.Context())
	// Untyped records: columns added in Write, inside a transaction that
	// goes on.
	s3, _ := e.openSink(e.sinkConfig(map[string]any{"table": "c", "evolve": stdlib.Ident("add_columns")}, nil, stdlib.ExactlyOnce))
	if err := s3.Write(t.Context(), []stdlib.Record{{Value: map[string]any{"id": int64(1), "user": int64(5)}, Partition: -1}}); err != nil {
		t.Fatal(err)
	}
	if err := s3.Write(t.Context(), []stdlib.Record{{Value: map[string]any{"id": int64(2), "score": 1.5, "tags": []any{"x"}}, Partition: -1}}); err != nil {
		t.Fatal(err)
	}
	if err := s3.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(2)}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT id, user, score, tags FROM c ORDER BY id")
	want := []string{"id=1 user=5 score=<nil> tags=<nil>", `id=2 user=<nil> score=1.5 tags=["x"]`}
	if !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
}

// TestSinkPositionsForTable: positions stored for a table are not held
// once it is dropped and created again (the contract suite checks the
// rest: TestContract/SinkHeld).
func TestSinkPositionsForTable(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE p (id bigint PRIMARY KEY)")
	cfg := e.sinkConfig(map[string]any{"table": "p", "mode": stdlib.Ident("upsert")}, nil, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	if err := s.Write(t.Context(), []stdlib.Record{{Value: map[string]any{"id": int64(1)}, Partition: -1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(7)}); err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())
	e.exec("RENAME TABLE p TO p2")
	e.exec("RENAME TABLE p2 TO p")
	if _, held := e.openSink(cfg); len(held) != 1 {
		t.Fatalf("renamed table: held %v, want the position", held)
	}
	e.exec("DROP TABLE p")
	e.exec("CREATE TABLE p (id bigint PRIMARY KEY)")
	s2, held := e.openSink(cfg)
	if len(held) != 0 {
		t.Fatalf("recreated table: held %v, want none", held)
	}
	if stored, err := s2.StoredPositions(t.Context()); err != nil || len(stored) != 0 {
		t.Fatalf("StoredPositions %v %v", stored, err)
	}
}

// TestSinkCommitOutcome: the connection dies during COMMIT (its thread is
// killed while the commit waits on a lock): the sink decides by the
// commit token, and nothing is lost or doubled.
func TestSinkConnectionLoss(t *testing.T) {
	e := newMy(t)
	cfg := e.sinkConfig(map[string]any{"table": "cl", "create_table": true, "batch": int64(100), "retry_timeout": 30 * time.Second}, eventType, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	if err := s.Write(t.Context(), events(0, 500)); err != nil {
		t.Fatal(err)
	}
	// Kill the sink's connection in the middle of its transaction: the
	// transaction is lost and replayed on a new connection.
	e.exec("KILL CONNECTION " + itoa(s.connID))
	if err := s.Write(t.Context(), events(500, 1000)); err != nil {
		t.Fatal(err)
	}
	e.exec("KILL CONNECTION " + itoa(s.connID))
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(999)}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM cl")
	if want := "count(*)=1000 count(DISTINCT id)=1000 min(id)=0 max(id)=999"; got[0] != want {
		t.Fatalf("%s, want %s", got[0], want)
	}
	// decide: the token of the last commit is read back.
	ok, err := s.decide(t.Context(), 12345, 0)
	if err != nil || ok {
		t.Fatalf("decide on another token: %v %v", ok, err)
	}
}

// TestSecretsRedacted: neither the dsn nor the password shows in errors.
func TestSecretsRedacted(t *testing.T) {
	e := newMy(t)
	const pw = "s3cr3t-Pa55"
	for _, attrs := range []map[string]any{
		{"dsn": "nobody:" + pw + "@tcp(" + testAddr() + ")/" + e.name},
		{"dsn": "nobody@tcp(" + testAddr() + ")/" + e.name, "password": pw},
		{"dsn": "nobody:" + pw + "@tcp(" + testAddr() + "/" + e.name}, // unparseable
		{"dsn": "nobody:" + pw + "@tcp(127.0.0.1:1)/" + e.name},       // refused
	} {
		attrs["table"] = "x"
		attrs["retry_timeout"] = time.Duration(0)
		cfg := e.sinkConfig(attrs, nil, stdlib.AtLeastOnce)
		s, err := newSink(cfg)
		if err == nil {
			_, err = s.Open(t.Context())
			s.Close(context.Background())
		}
		if err == nil {
			t.Fatalf("%v: no error", attrs)
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), attrs["dsn"].(string)) {
			t.Fatalf("error shows the secret: %v", err)
		}
		t.Log(err)
	}
}

// TestSinkCommitOutcome: after a COMMIT whose answer was lost, the sink
// decides by the commit token: a transaction that committed is not
// replayed; one still open on the old connection is killed with it first,
// so that it can no longer commit after the sink replayed it.
func TestSinkCommitOutcome(t *testing.T) {
	e := newMy(t)
	cfg := e.sinkConfig(map[string]any{"table": "co", "create_table": true, "batch": int64(10)}, eventType, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	ctx := t.Context()
	if err := s.Write(ctx, events(0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.storePositions(ctx, pos(9), 111); err != nil {
		t.Fatal(err)
	}
	id := s.connID
	if err := s.tx.Commit(); err != nil {
		t.Fatal(err)
	}
	s.tx = nil
	s.Reset()
	if ok, err := s.decide(ctx, 111, id); err != nil || !ok {
		t.Fatalf("decide on a committed token: %v %v", ok, err)
	}
	s.Committed()
	// A transaction left open on its connection, as when COMMIT's answer
	// is lost before the server got it.
	if err := s.Write(ctx, events(10, 20)); err != nil {
		t.Fatal(err)
	}
	if err := s.storePositions(ctx, pos(19), 222); err != nil {
		t.Fatal(err)
	}
	oldConn, oldTx, oldID := s.conn, s.tx, s.connID
	s.conn, s.tx = nil, nil
	if ok, err := s.decide(ctx, 222, oldID); err != nil || ok {
		t.Fatalf("decide on an open transaction: %v %v", ok, err)
	}
	if got := e.rows("SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE ID = " + itoa(oldID)); got[0] != "n=0" {
		t.Fatalf("the old connection still runs: %v", got)
	}
	if err := oldTx.Commit(); err == nil {
		t.Fatal("the old transaction committed after decide")
	}
	oldConn.Close()
	if n := e.count("co"); n != 10 {
		t.Fatalf("%d rows, want 10", n)
	}
	// The sink replays the open transaction and commits it once.
	if err := s.Checkpoint(ctx, stdlib.Checkpoint{ID: 3, Positions: pos(19)}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM co")
	if got[0] != "n=20 ids=20" {
		t.Fatalf("%v, want 20 rows once", got)
	}
}

// TestSinkServerCheckedTypes: a DECIMAL overflow and an ENUM label the
// column lacks are judged by the server; the rows are sent at the end of
// every Write, and the rejected ones reported against their records.
func TestSinkServerCheckedTypes(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE d (id int PRIMARY KEY, price decimal(4,2), size enum('s','m','l'))")
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": "d", "mode": stdlib.Ident("upsert")}, nil, stdlib.ExactlyOnce))
	if s.Coalesce {
		t.Fatal("rows of a table with decimal and enum columns are buffered across Writes")
	}
	rec := func(id int64, price float64, size string) stdlib.Record {
		return stdlib.Record{Value: map[string]any{"id": id, "price": price, "size": size}, Partition: -1}
	}
	err := s.Write(t.Context(), []stdlib.Record{rec(1, 12.5, "s"), rec(2, 12345.6, "m"), rec(3, 1, "xl"), rec(4, 99.99, "l")})
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) || len(rerrs) != 2 || rerrs[0].Index != 1 || rerrs[1].Index != 2 {
		t.Fatalf("Write: %v, want records 1 and 2 rejected", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(4)}); err != nil {
		t.Fatal(err)
	}
	if got := e.rows("SELECT id, price, size FROM d ORDER BY id"); !slices.Equal(got, []string{"id=1 price=12.50 size=s", "id=4 price=99.99 size=l"}) {
		t.Fatalf("rows %v", got)
	}
}
