package mysql

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// readN reads until n records came.
func readN(t *testing.T, s *source, n int) []stdlib.Record {
	return stdlibtest.ReadN(t, s, n, 20*time.Second)
}

// TestSourceIncrementing reads a table by its id in batches, then new rows
// as they come, with the columns' types; it resumes after a position, and
// its identity changes when the table is dropped and created again.
func TestSourceIncrementing(t *testing.T) {
	e := newMy(t)
	e.exec(`CREATE TABLE s (id bigint AUTO_INCREMENT PRIMARY KEY, name varchar(20) NOT NULL, amount decimal(10,2),
		ok tinyint(1), at datetime(6), doc json, raw varbinary(10), small smallint unsigned)`)
	for i := 0; i < 25; i++ {
		e.exec("INSERT INTO s (name, amount, ok, at, doc, raw, small) VALUES (?, 1.25, 1, '2024-01-01 00:00:01.5', '{\"a\": [1, 2.5]}', x'0102', 7)",
			"n"+itoa(int64(i)))
	}
	r := &resumer{off: 10}
	src := e.openSource(map[string]any{"table": "s", "incrementing_column": "id", "batch": int64(4), "poll": 50 * time.Millisecond}, nil, r)
	if !strings.HasPrefix(r.got, "server id ") || !strings.Contains(r.got, " table ") {
		t.Fatalf("identity %q", r.got)
	}
	recs := readN(t, src, 15)
	if len(recs) != 15 || recs[0].Pos.Offset != 11 || recs[14].Pos.Offset != 25 {
		t.Fatalf("read %d records, %v .. %v", len(recs), recs[0].Pos, recs[len(recs)-1].Pos)
	}
	m := recs[0].Value.(map[string]any)
	want := map[string]any{"id": int64(11), "name": "n10", "amount": 1.25, "ok": true,
		"at": time.Date(2024, 1, 1, 0, 0, 1, 5e8, time.UTC), "doc": map[string]any{"a": []any{int64(1), 2.5}},
		"raw": []byte{1, 2}, "small": int64(7)}
	for k, v := range want {
		if !equal(m[k], v) {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	typ := src.Type()
	if f := typ.Field("amount"); f == nil || f.Type.Kind != types.Float || !f.Type.Optional {
		t.Errorf("amount type %v", f)
	}
	if f := typ.Field("name"); f.Type.Optional {
		t.Error("a NOT NULL column read as optional")
	}
	e.exec("INSERT INTO s (name) VALUES ('late')")
	recs = readN(t, src, 1)
	if recs[0].Value.(map[string]any)["name"] != "late" {
		t.Fatalf("new row: %v", recs[0].Value)
	}
	id := r.got
	e.exec("DROP TABLE s")
	e.exec("CREATE TABLE s (id bigint PRIMARY KEY, name varchar(20))")
	r2 := &resumer{}
	e.openSource(map[string]any{"table": "s", "incrementing_column": "id"}, nil, r2)
	if r2.got == id {
		t.Fatalf("identity %q unchanged for a table created again", id)
	}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case time.Time:
		return x.Equal(b.(time.Time))
	case []byte:
		return slices.Equal(x, b.([]byte))
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !equal(x[k], y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// TestSourceTimestamp reads new and updated rows by a timestamp column and
// an id: a batch never splits the rows of one timestamp, so a resume after
// a position misses none.
func TestSourceTimestamp(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE ts (id int PRIMARY KEY, v int, updated datetime(6) NOT NULL)")
	// 3 rows at t1, 5 at t2, 2 at t3.
	for i := 1; i <= 10; i++ {
		at := "2024-01-01 00:00:01"
		if i > 3 {
			at = "2024-01-01 00:00:02"
		}
		if i > 8 {
			at = "2024-01-01 00:00:03"
		}
		e.exec("INSERT INTO ts VALUES (?, 0, ?)", i, at)
	}
	src := e.openSource(map[string]any{"table": "ts", "mode": stdlib.Ident("timestamp_incrementing"),
		"timestamp_column": "updated", "incrementing_column": "id", "batch": int64(4), "poll": 50 * time.Millisecond}, nil, nil)
	var sizes []int
	var ids []int64
	for len(ids) < 10 {
		recs, err := src.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(recs))
		for _, r := range recs {
			ids = append(ids, r.Value.(map[string]any)["id"].(int64))
		}
	}
	// 4 rows: t1 x3 + one of t2 -> cut to 3; then 4 of t2's 5 -> the whole
	// group read (5); then t3.
	if !slices.Equal(sizes, []int{3, 5, 2}) || !slices.Equal(ids, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("batches %v ids %v", sizes, ids)
	}
	e.exec("UPDATE ts SET v = 1, updated = '2024-01-01 00:00:04' WHERE id = 2")
	recs := readN(t, src, 1)
	if recs[0].Value.(map[string]any)["id"] != int64(2) || recs[0].Pos.Offset != time.Date(2024, 1, 1, 0, 0, 4, 0, time.UTC).UnixMicro() {
		t.Fatalf("update read as %v at %v", recs[0].Value, recs[0].Pos)
	}
	// Resuming after t2 reads t3 and the update.
	src2 := e.openSource(map[string]any{"table": "ts", "mode": stdlib.Ident("timestamp"), "timestamp_column": "updated"}, nil,
		&resumer{off: time.Date(2024, 1, 1, 0, 0, 2, 0, time.UTC).UnixMicro()})
	recs = readN(t, src2, 3)
	if len(recs) != 3 {
		t.Fatalf("resumed read %d", len(recs))
	}
}

// TestSourceBulkQueryAndSchema reads a query in bulk; a declared schema
// that does not fit the columns fails at Open.
func TestSourceBulkQueryAndSchema(t *testing.T) {
	e := newMy(t)
	e.exec("CREATE TABLE b (id int PRIMARY KEY, name text)")
	e.exec("INSERT INTO b VALUES (3, 'c'), (1, 'a'), (2, 'b')")
	src := e.openSource(map[string]any{"query": "SELECT id, upper(name) AS up FROM b WHERE id > 1", "mode": stdlib.Ident("bulk")}, nil, nil)
	recs, err := src.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("read %d", len(recs))
	}
	if _, err := src.Read(t.Context()); !errors.Is(err, stdlib.ErrEndOfInput) {
		t.Fatalf("after the bulk read: %v", err)
	}
	bad := types.RecordOf(&types.Field{Name: "id", Type: types.StringType}, &types.Field{Name: "nope", Type: types.IntType})
	cfg := e.config(SourceSpec, map[string]any{"table": "b", "incrementing_column": "id"}, nil, "")
	cfg.Schema = bad
	s, err := newSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Open(t.Context(), nil)
	s.Close(t.Context())
	if err == nil || !strings.Contains(err.Error(), `field "nope" of schema`) || !strings.Contains(err.Error(), `field "id" (string) does not fit`) {
		t.Fatalf("Open with a schema that does not fit: %v", err)
	}
}
