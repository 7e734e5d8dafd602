package postgres

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

func TestSinkInsertCreateTable(t *testing.T) {
	e := newPG(t)
	cfg := e.sinkConfig(map[string]any{"table": e.table("events"), "create_table": true, "key": []any{"id"}},
		eventType, stdlib.AtLeastOnce)
	s, held := e.openSink(cfg)
	if held != nil {
		t.Fatalf("at_least_once sink held %v", held)
	}
	got := e.rows(`SELECT column_name, data_type, is_nullable FROM information_schema.columns
WHERE table_schema = '` + e.schema + `' AND table_name = 'events' ORDER BY ordinal_position`)
	want := []string{
		"column_name=id data_type=bigint is_nullable=NO",
		"column_name=user data_type=text is_nullable=YES",
		"column_name=amount data_type=double precision is_nullable=YES",
		"column_name=country data_type=text is_nullable=YES",
		"column_name=event data_type=text is_nullable=YES",
		"column_name=ts data_type=timestamp with time zone is_nullable=YES",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("created columns:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := s.Write(t.Context(), events(1, 4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(3)}); err != nil {
		t.Fatal(err)
	}
	got = e.rows("SELECT * FROM " + e.table("events") + " ORDER BY id")
	want = []string{
		"id=1 user=u1 amount=0.01 country=NL event=purchase ts=2024-01-01T00:00:01Z",
		"id=2 user=u2 amount=0.02 country=NL event=purchase ts=2024-01-01T00:00:02Z",
		"id=3 user=u3 amount=0.03 country=NL event=purchase ts=2024-01-01T00:00:03Z",
	}
	sameRows(t, got, want)
	if got := e.rows("SELECT to_regclass('" + e.table("pipe_offsets") + "') IS NULL AS absent"); got[0] != "absent=true" {
		t.Fatal("at_least_once created the offsets table")
	}
}

func TestSinkTypesAndJSON(t *testing.T) {
	for _, mode := range []string{"insert", "upsert"} {
		t.Run(mode, func(t *testing.T) { testSinkTypes(t, mode) })
	}
}

func testSinkTypes(t *testing.T, mode string) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("t") + ` (id int4 PRIMARY KEY, n int2, f real, d numeric(10,2), s varchar(5),
  b bytea, ok boolean, j jsonb, u uuid, at timestamp)`)
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": e.table("t"), "mode": stdlib.Ident(mode)}, nil, stdlib.AtLeastOnce))
	batch := []stdlib.Record{
		{Value: map[string]any{"id": int64(1), "n": int64(7), "f": 1.5, "d": 12.25, "s": "abc", "b": []byte{1, 2},
			"ok": true, "j": map[string]any{"a": []any{int64(1), "x"}}, "u": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
			"at": baseTime}},
		{Value: map[string]any{"id": int64(2), "n": int64(70000)}},            // out of range
		{Value: map[string]any{"id": int64(3), "s": "toolong"}},               // too long
		{Value: map[string]any{"id": int64(4), "ok": "yes"}},                  // wrong type
		{Value: map[string]any{"id": int64(5), "u": "not-a-uuid"}},            // bad uuid
		{Value: map[string]any{"id": int64(6), "extra": "no column"}},         // unknown field
		{Value: map[string]any{"id": int64(7), "at": "2024-01-02T03:04:05Z"}}, // RFC 3339 string
	}
	err := s.Write(t.Context(), batch)
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) {
		t.Fatalf("Write = %v, want RecordErrors", err)
	}
	var idx []int
	for _, re := range rerrs {
		idx = append(idx, re.Index)
	}
	if !reflect.DeepEqual(idx, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("rejected %v (%v), want records 1-5", idx, err)
	}
	for _, want := range []string{`column "n" (smallint): 70000 out of range`, `too long`, `cannot take a string`, `not a UUID`, `field "extra" has no column`} {
		if !strings.Contains(err.Error()+rerrs[0].Error()+rerrs[1].Error()+rerrs[2].Error()+rerrs[3].Error()+rerrs[4].Error(), want) {
			t.Errorf("errors %v do not mention %q", rerrs, want)
		}
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT id, n, f, d::text, s, b, ok, j::text, u::text, at FROM " + e.table("t") + " ORDER BY id")
	want := []string{
		"id=1 n=7 f=1.5 d=12.25 s=abc b=[1 2] ok=true j={\"a\": [1, \"x\"]} u=6ba7b810-9dad-11d1-80b4-00c04fd430c8 at=2024-01-01T00:00:00Z",
		"id=7 n=<nil> f=<nil> d=<nil> s=<nil> b=<nil> ok=<nil> j=<nil> u=<nil> at=2024-01-02T03:04:05Z",
	}
	sameRows(t, got, want)
}

func TestSinkUpsertAndDeletes(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("u") + ` (id bigint PRIMARY KEY, name text, n bigint)`)
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": e.table("u"), "mode": stdlib.Ident("upsert")}, nil, stdlib.AtLeastOnce))
	rec := func(id int64, name string, n int64) stdlib.Record {
		return stdlib.Record{Value: map[string]any{"id": id, "name": name, "n": n}}
	}
	if err := s.Write(t.Context(), []stdlib.Record{rec(1, "a", 1), rec(2, "b", 1), rec(3, "c", 1), rec(1, "a2", 2)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), []stdlib.Record{
		rec(2, "b2", 2),
		{Key: map[string]any{"id": int64(3)}, Value: nil},         // tombstone, record key
		{Value: map[string]any{"id": int64(2), "__op": "delete"}}, // marked delete
		rec(4, "d", 1),
		{Key: "5", Value: nil}, // tombstone, scalar key
		rec(6, "f", 1),
		{Key: []byte("6"), Value: nil}, // deleted after its upsert
		rec(7, "g", 1),
		{Value: map[string]any{"id": int64(7), "__op": "delete"}},
		rec(7, "g2", 2), // re-inserted after its delete: last wins
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 2}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT * FROM " + e.table("u") + " ORDER BY id")
	want := []string{"id=1 name=a2 n=2", "id=4 name=d n=1", "id=7 name=g2 n=2"}
	sameRows(t, got, want)
}

func TestSinkDeleteMode(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("d") + ` (a text, b int, v text, PRIMARY KEY (a, b));
INSERT INTO ` + e.table("d") + ` VALUES ('x', 1, 'keep'), ('x', 2, 'drop'), ('y', 1, 'drop'), ('y', 2, 'keep')`)
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": e.table("d"), "mode": stdlib.Ident("delete"),
		"key": []any{"a", "b"}}, nil, stdlib.ExactlyOnce))
	err := s.Write(t.Context(), []stdlib.Record{
		{Value: map[string]any{"a": "x", "b": int64(2), "v": "ignored"}},
		{Value: map[string]any{"a": "y", "b": int64(1)}},
		{Value: map[string]any{"a": "y"}}, // no b
	})
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) || len(rerrs) != 1 || rerrs[0].Index != 2 || !strings.Contains(rerrs[0].Error(), `key field "b"`) {
		t.Fatalf("Write = %v, want record 2 rejected for its missing key field", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(3)}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT * FROM " + e.table("d") + " ORDER BY a, b")
	want := []string{"a=x b=1 v=keep", "a=y b=2 v=keep"}
	sameRows(t, got, want)
}

func TestSinkEvolve(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("ev") + ` (id bigint PRIMARY KEY, "user" text)`)
	// At Open: the record type has fields the table lacks.
	cfg := e.sinkConfig(map[string]any{"table": e.table("ev"), "mode": stdlib.Ident("upsert"),
		"evolve": stdlib.Ident("add_columns")}, eventType, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	if err := s.Write(t.Context(), events(1, 3)); err != nil {
		t.Fatal(err)
	}
	// At Write: untyped records gain fields.
	s.Tbl.RType = nil
	if err := s.Write(t.Context(), []stdlib.Record{
		{Value: map[string]any{"id": int64(3), "tags": []any{"a"}, "score": int64(5), "note": nil}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(3)}); err != nil {
		t.Fatal(err)
	}
	got := e.rows(`SELECT column_name, data_type, is_nullable FROM information_schema.columns
WHERE table_schema = '` + e.schema + `' AND table_name = 'ev' ORDER BY ordinal_position`)
	want := []string{
		"column_name=id data_type=bigint is_nullable=NO",
		"column_name=user data_type=text is_nullable=YES",
		"column_name=amount data_type=double precision is_nullable=YES",
		"column_name=country data_type=text is_nullable=YES",
		"column_name=event data_type=text is_nullable=YES",
		"column_name=ts data_type=timestamp with time zone is_nullable=YES",
	}
	if len(got) != 8 || !reflect.DeepEqual(got[:6], want) {
		t.Fatalf("columns:\n%s", strings.Join(got, "\n"))
	}
	rest := got[6:]
	if !(slices.Contains(rest, "column_name=tags data_type=jsonb is_nullable=YES") && slices.Contains(rest, "column_name=score data_type=bigint is_nullable=YES")) {
		t.Fatalf("columns added at Write: %v", rest)
	}
	got = e.rows("SELECT id, \"user\", amount, tags::text, score FROM " + e.table("ev") + " ORDER BY id")
	want = []string{
		"id=1 user=u1 amount=0.01 tags=<nil> score=<nil>",
		"id=2 user=u2 amount=0.02 tags=<nil> score=<nil>",
		`id=3 user=<nil> amount=<nil> tags=["a"] score=5`,
	}
	sameRows(t, got, want)
}

func TestSinkColumnMismatch(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("m") + ` (id bigint PRIMARY KEY, "user" text, amount text, country text, event text,
  ts timestamptz, required text NOT NULL)`)
	for _, tc := range []struct {
		name  string
		typ   *types.Type
		attrs map[string]any
		want  []string
	}{
		{"types", eventType, nil, []string{
			`field "amount" (float) does not fit column "amount" (text) of table "` + e.table("m") + `"`,
			`column "required" of table "` + e.table("m") + `" is NOT NULL without a default, and the records have no field "required"`,
		}},
		{"missing column", types.RecordOf(&types.Field{Name: "id", Type: types.IntType},
			&types.Field{Name: "required", Type: types.StringType}, &types.Field{Name: "nope", Type: types.BoolType}), nil,
			[]string{`field "nope" has no column in table "` + e.table("m") + `" (add the column or set evolve = add_columns)`}},
		{"key", types.RecordOf(&types.Field{Name: "required", Type: types.StringType}),
			map[string]any{"mode": stdlib.Ident("upsert"), "key": []any{"id"}},
			[]string{`key column "id" is not a field of the records`}},
		{"upsert key", types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "user", Type: types.StringType},
			&types.Field{Name: "required", Type: types.StringType}),
			map[string]any{"mode": stdlib.Ident("upsert"), "key": []any{"user"}},
			[]string{`mode upsert needs a primary key or unique index on exactly the key columns (user) of table "` + e.table("m") + `"`}},
		{"no table", eventType, map[string]any{"table": e.table("absent")},
			[]string{`table "` + e.table("absent") + `" does not exist (set create_table = true to create it)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs := map[string]any{"table": e.table("m")}
			for k, v := range tc.attrs {
				attrs[k] = v
			}
			s, err := newSink(e.sinkConfig(attrs, tc.typ, stdlib.AtLeastOnce))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Open(t.Context())
			if err == nil {
				s.Close(t.Context())
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestSinkServerRejectsRecords(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("c") + ` (id bigint PRIMARY KEY, amount double precision CHECK (amount >= 0), name text NOT NULL)`)
	for _, mode := range []string{"insert", "upsert"} {
		t.Run(mode, func(t *testing.T) {
			e.exec("TRUNCATE " + e.table("c"))
			s, _ := e.openSink(e.sinkConfig(map[string]any{"table": e.table("c"), "mode": stdlib.Ident(mode), "batch": int64(4)},
				nil, stdlib.ExactlyOnce))
			var batch []stdlib.Record
			for i := range int64(10) {
				v := map[string]any{"id": i, "amount": float64(i), "name": "n"}
				switch i {
				case 3, 8: // CHECK violation: only the server knows
					v["amount"] = -1.0
				case 5: // NOT NULL violation, caught before sending
					v["name"] = nil
				}
				batch = append(batch, stdlib.Record{Value: v, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: i}})
			}
			err := s.Write(t.Context(), batch)
			var rerrs stdlib.RecordErrors
			if !errors.As(err, &rerrs) {
				t.Fatalf("Write = %v, want RecordErrors", err)
			}
			var idx []int
			for _, re := range rerrs {
				idx = append(idx, re.Index)
			}
			if !reflect.DeepEqual(idx, []int{3, 5, 8}) {
				t.Fatalf("rejected %v, want [3 5 8]: %v", idx, err)
			}
			if !strings.Contains(rerrs[0].Error(), "check constraint") || !strings.Contains(rerrs[1].Error(), `column "name" is NOT NULL`) {
				t.Errorf("errors: %v", rerrs)
			}
			if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(9)}); err != nil {
				t.Fatal(err)
			}
			got := e.rows("SELECT id FROM " + e.table("c") + " ORDER BY id")
			want := []string{"id=0", "id=1", "id=2", "id=4", "id=6", "id=7", "id=9"}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("rows %v, want %v", got, want)
			}
			s.Close(t.Context())
		})
	}
}

// TestSinkConnectionLoss kills the sink's server process in the middle of
// a transaction, then before a COMMIT: the sink reconnects, replays and
// commits every row exactly once.
func TestSinkConnectionLoss(t *testing.T) {
	e := newPG(t)
	for _, tc := range []struct {
		mode     string
		delivery stdlib.Delivery
	}{{"insert", stdlib.ExactlyOnce}, {"upsert", stdlib.ExactlyOnce}, {"insert", stdlib.AtLeastOnce}} {
		t.Run(tc.mode+"_"+string(tc.delivery), func(t *testing.T) {
			table := e.table("cl_" + tc.mode + "_" + string(tc.delivery))
			cfg := e.sinkConfig(map[string]any{"table": table, "create_table": true, "key": []any{"id"},
				"mode": stdlib.Ident(tc.mode), "batch": int64(1000000)}, eventType, tc.delivery)
			cfg.Stage = "out_" + tc.mode + "_" + string(tc.delivery)
			s, _ := e.openSink(cfg)
			kill := func() {
				t.Helper()
				pid := s.conn.PgConn().PID()
				e.exec("SELECT pg_terminate_backend($1)", int32(pid))
			}
			if err := s.Write(t.Context(), events(1, 1001)); err != nil {
				t.Fatal(err)
			}
			kill()
			if err := s.Write(t.Context(), events(1001, 2001)); err != nil {
				t.Fatal(err)
			}
			kill()
			if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(2000)}); err != nil {
				t.Fatal(err)
			}
			got := e.rows("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM " + table)
			if want := "count=2000 count=2000 min=1 max=2000"; got[0] != want {
				t.Fatalf("%s, want %s", got[0], want)
			}
		})
	}
}

// TestSinkCommitOutcome checks how an unknown COMMIT outcome is decided.
func TestSinkCommitOutcome(t *testing.T) {
	e := newPG(t)
	cfg := e.sinkConfig(map[string]any{"table": e.table("co"), "create_table": true}, eventType, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	if err := s.Write(t.Context(), events(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.storePositions(t.Context(), s.tx, pos(2), 4242); err != nil {
		t.Fatal(err)
	}
	pid, start := s.conn.PgConn().PID(), s.backendStart
	// The transaction is still open on its backend: deciding must end
	// that backend (rolling it back) and find the token absent.
	other, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	other.dsn = testDSN()
	ok, err := other.decide(t.Context(), 4242, pid, start)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	if ok {
		t.Fatal("an open transaction was taken for committed")
	}
	if n := e.count(e.table("co")); n != 0 {
		t.Fatalf("%d rows after the undecided transaction was ended", n)
	}
	// A committed token is recognised.
	s.Reset()
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(2)}); err != nil {
		t.Fatal(err)
	}
	var token int64
	if err := e.conn.QueryRow(t.Context(), `SELECT "offset" FROM `+e.table("pipe_offsets")+` WHERE source = ''`).Scan(&token); err != nil {
		t.Fatal(err)
	}
	if ok, err := other.decide(t.Context(), token, 0, start); err != nil || !ok {
		t.Fatalf("decide(committed token) = %v, %v", ok, err)
	}
	if n := e.count(e.table("co")); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

// TestSinkBuffering checks that rows of several Writes share statements
// when the table allows it, with the last record of a key winning across
// Writes, and that a row the server rejects after its Write returned fails
// the sink with its position.
func TestSinkBuffering(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("b") + ` (id bigint PRIMARY KEY, name text)`)
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": e.table("b"), "mode": stdlib.Ident("upsert"),
		"batch": int64(4), "flush": time.Hour}, nil, stdlib.ExactlyOnce))
	if !s.Coalesce {
		t.Fatal("upsert into a table with only its primary key does not buffer")
	}
	rec := func(id int64, name string, off int64) stdlib.Record {
		return stdlib.Record{Value: map[string]any{"id": id, "name": name}, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: off}}
	}
	if err := s.Write(t.Context(), []stdlib.Record{rec(1, "a", 1), rec(2, "b", 2)}); err != nil {
		t.Fatal(err)
	}
	if len(s.Buf.Items) != 2 || len(s.Done) != 0 {
		t.Fatalf("buffered %d, sent %d steps; want 2 buffered", len(s.Buf.Items), len(s.Done))
	}
	if err := s.Write(t.Context(), []stdlib.Record{rec(1, "a2", 3), {Value: map[string]any{"id": int64(2), "__op": "delete"}}}); err != nil {
		t.Fatal(err)
	}
	if len(s.Buf.Items) != 0 || len(s.Done) == 0 {
		t.Fatalf("a full buffer was not sent: %d buffered", len(s.Buf.Items))
	}
	if err := s.Write(t.Context(), []stdlib.Record{rec(3, "c", 5)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos(5)}); err != nil {
		t.Fatal(err)
	}
	got := e.rows("SELECT * FROM " + e.table("b") + " ORDER BY id")
	if want := []string{"id=1 name=a2", "id=3 name=c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}

	// A constraint added behind the sink's back: the buffered row is
	// rejected after its Write returned.
	e.exec(`ALTER TABLE ` + e.table("b") + ` ADD CHECK (name <> 'bad')`)
	if err := s.Write(t.Context(), []stdlib.Record{rec(4, "bad", 6)}); err != nil {
		t.Fatal(err)
	}
	err := s.Write(t.Context(), []stdlib.Record{rec(5, "e", 7), rec(6, "f", 8), rec(7, "g", 9)})
	if err == nil || errors.As(err, new(stdlib.RecordErrors)) || !strings.Contains(err.Error(), "record at in[p0]@6") {
		t.Fatalf("Write = %v, want the failure of the earlier record at in[p0]@6", err)
	}
	// The transaction is in doubt: the sink refuses to go on.
	if err := s.Write(t.Context(), []stdlib.Record{rec(8, "h", 10)}); err == nil || !strings.Contains(err.Error(), "a restart is needed") {
		t.Fatalf("Write after a failure = %v", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 2, Positions: pos(10)}); err == nil {
		t.Fatal("Checkpoint after a failure succeeded")
	}
	if got := e.rows("SELECT count(*) FROM " + e.table("b")); got[0] != "count=2" {
		t.Fatalf("table has %s after the failure, want the 2 rows of the last checkpoint", got[0])
	}
}

// TestSinkNonFinite checks that NaN and infinities go where PostgreSQL
// takes them (float columns, numeric) and that a column rejecting a value
// rejects that record alone, in upsert mode too (where rows of several
// Writes may share a statement): the client's own check (NaN in an int
// column) and the server's (an infinity or an overflow in numeric(10,2))
// alike.
func TestSinkNonFinite(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TABLE ` + e.table("nf") + ` (id bigint PRIMARY KEY, f float8, r real, n numeric, d numeric(10,2), i int8)`)
	for _, mode := range []string{"insert", "upsert"} {
		t.Run(mode, func(t *testing.T) {
			e.exec("TRUNCATE " + e.table("nf"))
			s, _ := e.openSink(e.sinkConfig(map[string]any{"table": e.table("nf"), "mode": stdlib.Ident(mode)}, nil, stdlib.AtLeastOnce))
			defer s.Close(t.Context())
			nan, inf := math.NaN(), math.Inf(1)
			batch := []stdlib.Record{
				{Value: map[string]any{"id": int64(1), "f": nan, "r": inf, "n": nan, "d": 1.5}},
				{Value: map[string]any{"id": int64(2), "f": -inf, "n": inf}},
				{Value: map[string]any{"id": int64(3), "d": inf}}, // the server rejects it
				{Value: map[string]any{"id": int64(4), "i": nan}}, // the client rejects it
				{Value: map[string]any{"id": int64(5), "n": -inf, "d": nan}},
				{Value: map[string]any{"id": int64(6), "d": 1e9}}, // overflow: the server rejects it
			}
			checkRejected(t, s.Write(t.Context(), batch), []int{2, 3, 5}, 3)
			if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
				t.Fatal(err)
			}
			got := e.rows("SELECT id, f::text, r::text, n::text, d::text FROM " + e.table("nf") + " ORDER BY id")
			want := []string{
				"id=1 f=NaN r=Infinity n=NaN d=1.50",
				"id=2 f=-Infinity r=<nil> n=Infinity d=<nil>",
				"id=5 f=<nil> r=<nil> n=-Infinity d=NaN",
			}
			sameRows(t, got, want)
		})
	}
}

// TestSinkServerCheckedTypes checks that a value only the server can judge
// (an enum label) is rejected with its own record in a table whose rows
// could otherwise be buffered across Writes.
func TestSinkServerCheckedTypes(t *testing.T) {
	e := newPG(t)
	e.exec(`CREATE TYPE ` + e.table("mood") + ` AS ENUM ('happy', 'sad')`)
	e.exec(`CREATE TABLE ` + e.table("moods") + ` (id bigint, m ` + e.table("mood") + `)`)
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": e.table("moods")}, nil, stdlib.AtLeastOnce))
	defer s.Close(t.Context())
	batch := []stdlib.Record{
		{Value: map[string]any{"id": int64(1), "m": "happy"}},
		{Value: map[string]any{"id": int64(2), "m": "angry"}},
	}
	checkRejected(t, s.Write(t.Context(), batch), []int{1}, -1)
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if got := e.rows("SELECT id, m::text FROM " + e.table("moods")); !reflect.DeepEqual(got, []string{"id=1 m=happy"}) {
		t.Fatalf("rows %v", got)
	}
}

// checkRejected checks that err rejects exactly the records at want, each
// by the server's verdict but the one at client (-1: none).
func checkRejected(t *testing.T, err error, want []int, client int) {
	t.Helper()
	var rerrs stdlib.RecordErrors
	errors.As(err, &rerrs)
	var idx []int
	for _, re := range rerrs {
		idx = append(idx, re.Index)
		if re.Index != client && !strings.Contains(re.Error(), "rejected by the database") {
			t.Errorf("record %d: %v, want the server's verdict", re.Index, re)
		}
	}
	if !reflect.DeepEqual(idx, want) {
		t.Fatalf("Write = %v, want records %v rejected", err, want)
	}
}
