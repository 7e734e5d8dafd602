package postgres

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

func (e *pgEnv) openSource(attrs map[string]any, schema *types.Type, resume stdlib.Resumer) *source {
	e.t.Helper()
	a := map[string]any{"dsn": testDSN()}
	for _, p := range SourceSpec.Params {
		if p.Default != nil {
			a[p.Name] = p.Default
		}
	}
	a["poll"] = 20 * time.Millisecond
	for k, v := range attrs {
		a[k] = v
	}
	s, err := newSource(stdlib.Config{Pipeline: "p", Stage: "src", Attrs: a, Schema: schema, Tasks: 1,
		Logger: e.logger()})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := s.Open(e.t.Context(), resume); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close(e.t.Context()) })
	return s
}

// read reads batches until n records came; it returns them as
// "offset:field=value,..." strings, one batch per element.
func readN(t *testing.T, s *source, n int, fields ...string) [][]string {
	t.Helper()
	var out [][]string
	got := 0
	for got < n {
		recs, err := s.Read(t.Context())
		if err != nil {
			t.Fatalf("Read after %d records: %v", got, err)
		}
		var batch []string
		for _, r := range recs {
			m := r.Value.(map[string]any)
			parts := make([]string, len(fields))
			for i, f := range fields {
				v := m[f]
				if tm, ok := v.(time.Time); ok {
					v = tm.UTC().Format("15:04:05")
				}
				parts[i] = fmt.Sprintf("%s=%v", f, v)
			}
			batch = append(batch, fmt.Sprintf("%d:%s", r.Pos.Offset, strings.Join(parts, ",")))
			if r.Pos.Source != "src" {
				t.Fatalf("position %v", r.Pos)
			}
		}
		got += len(recs)
		out = append(out, batch)
	}
	return out
}

func TestSourceIncrementing(t *testing.T) {
	e := newPG(t)
	tbl := e.table("inc")
	e.exec(`CREATE TABLE ` + tbl + ` (id bigserial PRIMARY KEY, name text NOT NULL, n int4, f numeric, j jsonb, b bytea, at timestamptz);
INSERT INTO ` + tbl + ` (name, n, f, j, b, at) SELECT 'r' || g, g, g / 2.0, jsonb_build_object('g', g, 'x', 1.5), '\x01', '2024-01-01'::timestamptz + g * interval '1 s'
FROM generate_series(1, 5) g`)
	s := e.openSource(map[string]any{"table": tbl, "incrementing_column": "id", "batch": int64(2)}, nil, nil)
	got := readN(t, s, 5, "name")
	want := [][]string{{"1:name=r1", "2:name=r2"}, {"3:name=r3", "4:name=r4"}, {"5:name=r5"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot %v, want %v", got, want)
	}
	// Values are in the lang/types representation.
	e.exec(`INSERT INTO ` + tbl + ` (name, n, f, j, b, at) VALUES ('r6', 6, 3.25, '{"g": 6, "x": [1.5, "y"]}', '\x0102', '2024-01-01T00:00:06Z')`)
	recs, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantV := map[string]any{"id": int64(6), "name": "r6", "n": int64(6), "f": 3.25,
		"j": map[string]any{"g": int64(6), "x": []any{1.5, "y"}}, "b": []byte{1, 2},
		"at": time.Date(2024, 1, 1, 0, 0, 6, 0, time.UTC)}
	gotV := recs[0].Value.(map[string]any)
	gotV["at"] = gotV["at"].(time.Time).UTC()
	if len(recs) != 1 || !reflect.DeepEqual(gotV, wantV) {
		t.Fatalf("polled %#v, want %#v", recs[0].Value, wantV)
	}
	wantT := "{id: int, name: string, n: int?, f: float?, j: any?, b: bytes?, at: timestamp?}"
	if got := s.Type().String(); got != wantT {
		t.Errorf("Type() = %s, want %s", got, wantT)
	}
	// Resume after offset 4.
	s2 := e.openSource(map[string]any{"table": tbl, "incrementing_column": "id"}, nil, stdlib.ResumeMap{tbl: 4})
	if got := readN(t, s2, 2, "name"); !reflect.DeepEqual(got, [][]string{{"5:name=r5", "6:name=r6"}}) {
		t.Fatalf("resumed %v", got)
	}
}

func TestSourceTimestampGroups(t *testing.T) {
	e := newPG(t)
	tbl := e.table("ts")
	// Timestamps: 3 rows at :01, 4 rows at :02, 1 at :03.
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, at timestamp NOT NULL);
INSERT INTO ` + tbl + ` VALUES (1, '2024-01-01 00:00:01'), (2, '2024-01-01 00:00:01'), (3, '2024-01-01 00:00:01'),
 (4, '2024-01-01 00:00:02'), (5, '2024-01-01 00:00:02'), (6, '2024-01-01 00:00:02'), (7, '2024-01-01 00:00:02'),
 (8, '2024-01-01 00:00:03')`)
	us := func(sec int) int64 { return time.Date(2024, 1, 1, 0, 0, sec, 0, time.UTC).UnixMicro() }
	for _, mode := range []string{"timestamp", "timestamp_incrementing"} {
		t.Run(mode, func(t *testing.T) {
			s := e.openSource(map[string]any{"table": tbl, "mode": stdlib.Ident(mode), "timestamp_column": "at",
				"incrementing_column": "id", "batch": int64(2)}, nil, nil)
			got := readN(t, s, 8, "id")
			// A batch never splits one timestamp; a full batch of one
			// timestamp is read whole.
			want := [][]string{
				{fmt.Sprintf("%d:id=1", us(1)), fmt.Sprintf("%d:id=2", us(1)), fmt.Sprintf("%d:id=3", us(1))},
				{fmt.Sprintf("%d:id=4", us(2)), fmt.Sprintf("%d:id=5", us(2)), fmt.Sprintf("%d:id=6", us(2)), fmt.Sprintf("%d:id=7", us(2))},
				{fmt.Sprintf("%d:id=8", us(3))},
			}
			if mode == "timestamp" {
				// Order within a timestamp is not defined: compare sorted.
				for _, b := range got {
					slicesSort(b)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
			// An updated row comes again with its new timestamp.
			e.exec(`UPDATE ` + tbl + ` SET at = '2024-01-01 00:00:09' WHERE id = 2`)
			if got := readN(t, s, 1, "id"); !reflect.DeepEqual(got, [][]string{{fmt.Sprintf("%d:id=2", us(9))}}) {
				t.Fatalf("after update: %v", got)
			}
			e.exec(`UPDATE ` + tbl + ` SET at = '2024-01-01 00:00:01' WHERE id = 2`)
			// Resume after the :02 group.
			s2 := e.openSource(map[string]any{"table": tbl, "mode": stdlib.Ident(mode), "timestamp_column": "at",
				"incrementing_column": "id"}, nil, stdlib.ResumeMap{tbl: us(2)})
			if got := readN(t, s2, 1, "id"); !reflect.DeepEqual(got, [][]string{{fmt.Sprintf("%d:id=8", us(3))}}) {
				t.Fatalf("resumed: %v", got)
			}
		})
	}
}

// TestSourceTimestampGroupCut reads a full batch whose last timestamp
// group is cut: the next read starts after the rows handed on, so the cut
// group comes whole with the next batch.
func TestSourceTimestampGroupCut(t *testing.T) {
	e := newPG(t)
	tbl := e.table("tscut")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, at timestamp NOT NULL);
INSERT INTO ` + tbl + ` VALUES (1, '2024-01-01 00:00:01'), (2, '2024-01-01 00:00:02'), (3, '2024-01-01 00:00:02')`)
	us := func(sec int) int64 { return time.Date(2024, 1, 1, 0, 0, sec, 0, time.UTC).UnixMicro() }
	s := e.openSource(map[string]any{"table": tbl, "mode": stdlib.Ident("timestamp_incrementing"), "timestamp_column": "at",
		"incrementing_column": "id", "batch": int64(2)}, nil, nil)
	got := readN(t, s, 3, "id")
	want := [][]string{{fmt.Sprintf("%d:id=1", us(1))}, {fmt.Sprintf("%d:id=2", us(2)), fmt.Sprintf("%d:id=3", us(2))}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestSourceDelay(t *testing.T) {
	e := newPG(t)
	tbl := e.table("dl")
	e.exec(`CREATE TABLE ` + tbl + ` (id int, at timestamptz);
INSERT INTO ` + tbl + ` VALUES (1, now() - interval '1 hour'), (2, now() + interval '1 hour')`)
	s := e.openSource(map[string]any{"table": tbl, "mode": stdlib.Ident("timestamp"), "timestamp_column": "at",
		"delay": time.Minute}, nil, nil)
	got := readN(t, s, 1, "id")
	if len(got) != 1 || len(got[0]) != 1 || !strings.HasSuffix(got[0][0], ":id=1") {
		t.Fatalf("got %v, want only the row older than the delay", got)
	}
}

func TestSourceBulkAndQuery(t *testing.T) {
	e := newPG(t)
	tbl := e.table("bk")
	e.exec(`CREATE TABLE ` + tbl + ` (k text PRIMARY KEY, v int);
INSERT INTO ` + tbl + ` VALUES ('c', 3), ('a', 1), ('b', 2), ('d', 4)`)
	s := e.openSource(map[string]any{"table": tbl, "mode": stdlib.Ident("bulk"), "batch": int64(3)}, nil, nil)
	got := readN(t, s, 4, "k")
	if want := [][]string{{"1:k=a", "2:k=b", "3:k=c"}, {"4:k=d"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bulk %v, want %v", got, want)
	}
	if _, err := s.Read(t.Context()); !errors.Is(err, stdlib.ErrEndOfInput) {
		t.Fatalf("Read after the end = %v", err)
	}
	s2 := e.openSource(map[string]any{"table": tbl, "mode": stdlib.Ident("bulk")}, nil, stdlib.ResumeMap{tbl: 2})
	if got := readN(t, s2, 2, "k"); !reflect.DeepEqual(got, [][]string{{"3:k=c", "4:k=d"}}) {
		t.Fatalf("bulk resumed %v", got)
	}
	q := e.openSource(map[string]any{"query": "SELECT v AS id, upper(k) AS name FROM " + tbl + " WHERE v > 1",
		"incrementing_column": "id"}, types.RecordOf(&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType.WithOptional(true)}), nil)
	if got := readN(t, q, 3, "name"); !reflect.DeepEqual(got, [][]string{{"2:name=B", "3:name=C", "4:name=D"}}) {
		t.Fatalf("query %v", got)
	}
	recs, _ := s2.Read(t.Context())
	if len(recs) != 0 {
		t.Fatalf("bulk read past its end: %v", recs)
	}
}

func TestSourceSchemaMismatch(t *testing.T) {
	e := newPG(t)
	tbl := e.table("sm")
	e.exec(`CREATE TABLE ` + tbl + ` (id bigint, name text, at timestamptz)`)
	a := map[string]any{"dsn": testDSN(), "table": tbl, "incrementing_column": "id", "mode": stdlib.Ident("incrementing"),
		"batch": int64(10), "poll": time.Second, "retry_timeout": time.Second}
	for _, tc := range []struct {
		name   string
		attrs  map[string]any
		schema *types.Type
		want   string
	}{
		{"type", nil, types.RecordOf(&types.Field{Name: "name", Type: types.IntType}),
			`field "name" (int) does not fit column "name" (text) of table "` + tbl + `"`},
		{"missing", nil, types.RecordOf(&types.Field{Name: "nope", Type: types.IntType}),
			`field "nope" of schema {nope: int} has no column in table "` + tbl + `"`},
		{"inc column", map[string]any{"incrementing_column": "name"}, nil,
			`incrementing_column "name" is text, not an integer`},
		{"ts column", map[string]any{"mode": stdlib.Ident("timestamp"), "timestamp_column": "id"}, nil,
			`timestamp_column "id" is bigint, not a timestamp`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs := map[string]any{}
			for k, v := range a {
				attrs[k] = v
			}
			for k, v := range tc.attrs {
				attrs[k] = v
			}
			s, err := newSource(stdlib.Config{Stage: "src", Attrs: attrs, Schema: tc.schema, Tasks: 1})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Open(t.Context(), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSourceReconnects(t *testing.T) {
	e := newPG(t)
	tbl := e.table("rc")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY); INSERT INTO ` + tbl + ` SELECT generate_series(1, 3)`)
	s := e.openSource(map[string]any{"table": tbl, "incrementing_column": "id"}, nil, nil)
	readN(t, s, 3, "id")
	e.exec("SELECT pg_terminate_backend($1)", int32(s.conn.PgConn().PID()))
	e.exec(`INSERT INTO ` + tbl + ` VALUES (4)`)
	if got := readN(t, s, 1, "id"); !reflect.DeepEqual(got, [][]string{{"4:id=4"}}) {
		t.Fatalf("after reconnecting: %v", got)
	}
}

func TestSpecsCheck(t *testing.T) {
	for _, tc := range []struct {
		spec  *stdlib.Spec
		attrs map[string]any
		want  []string
	}{
		{SourceSpec, map[string]any{"table": "a", "query": "SELECT 1"}, []string{"query: set table or query, not both", "mode: mode incrementing needs incrementing_column"}},
		{SourceSpec, map[string]any{"mode": stdlib.Ident("timestamp_incrementing")}, []string{"table: set table or query",
			"mode: mode timestamp_incrementing needs incrementing_column", "mode: mode timestamp_incrementing needs timestamp_column"}},
		{SourceSpec, map[string]any{"table": "a.b.c", "mode": stdlib.Ident("bulk")}, []string{`table: invalid table name "a.b.c": want table or schema.table`}},
		{SinkSpec, map[string]any{"table": "x..y", "batch": int64(0), "key": []any{}}, []string{`table: invalid table name "x..y"`,
			"batch: batch must be positive", "key: key must name at least one column"}},
		{SinkSpec, map[string]any{"table": "s.t", "mode": stdlib.Ident("upsert")}, nil},
	} {
		var got []string
		attrs, err := tc.spec.Values(tc.attrs) // Check sees the defaults
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range tc.spec.Check(attrs) {
			got = append(got, e.Attr+": "+e.Message)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s Check(%v) = %q, want %q", tc.spec.Kind, tc.attrs, got, tc.want)
		}
	}
	r := stdlib.NewRegistry(SourceSpec, SinkSpec)
	if r.Lookup(stdlib.SinkKind, "postgres") == nil || r.Lookup(stdlib.SourceKind, "postgres") == nil {
		t.Fatal("specs not registered")
	}
}
