package core

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// TestGenerateBatchParts checks that records do not depend on the batch
// size, nor on which of the workers building batches ahead built them.
func TestGenerateBatchParts(t *testing.T) {
	fields := benchTemplate()
	fields["name"] = &stdlib.Call{Name: "format", Args: map[string]any{"0": "u%d-%s", "1": &stdlib.Call{Name: "random_int", Args: map[string]any{"0": int64(1), "1": int64(1000)}}, "2": &stdlib.Call{Name: "pick", Args: map[string]any{"0": []any{"a", "b"}}}}}
	read := func(batch int64) []stdlib.Record {
		g, err := newGenerate(config(GenerateSpec, "gen", map[string]any{"fields": fields, "batch": batch, "count": int64(5000), "seed": int64(7)}))
		if err != nil {
			t.Fatal(err)
		}
		return drain(t, g, nil)
	}
	whole, small := read(2048), read(100)
	if len(whole) != 5000 || len(small) != 5000 {
		t.Fatalf("%d and %d records, want 5000", len(whole), len(small))
	}
	for i := range whole {
		if !reflect.DeepEqual(whole[i].Value, small[i].Value) || whole[i].Pos != small[i].Pos {
			t.Fatalf("record %d: %v at %v in batches of 2048, %v at %v in batches of 100", i, whole[i].Value, whole[i].Pos, small[i].Value, small[i].Pos)
		}
	}
}

// TestGenerateRows checks that the rows generate builds when the executor
// takes rows stand for the maps it builds otherwise.
func TestGenerateRows(t *testing.T) {
	read := func(rows bool) []stdlib.Record {
		cfg := config(GenerateSpec, "gen", map[string]any{"fields": benchTemplate(), "count": int64(3000), "seed": int64(5)})
		cfg.Rows = rows
		g, err := newGenerate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return drain(t, g, nil)
	}
	rows, maps := read(true), read(false)
	if len(rows) != 3000 || len(maps) != 3000 {
		t.Fatalf("%d and %d records, want 3000", len(rows), len(maps))
	}
	for i := range rows {
		row, ok := rows[i].Value.(*stdlib.Row)
		if !ok {
			t.Fatalf("record %d is %T, want a row", i, rows[i].Value)
		}
		if !reflect.DeepEqual(row.Map(), maps[i].Value) || rows[i].Pos != maps[i].Pos {
			t.Fatalf("record %d: row %v at %v, map %v at %v", i, row.Map(), rows[i].Pos, maps[i].Value, maps[i].Pos)
		}
	}
}

// TestGenerateWorkersStop checks that the workers building batches ahead
// of an endless generate stop at Close, and that a generate resumed after
// record k goes on from k+1 whatever was built ahead before.
func TestGenerateWorkersStop(t *testing.T) {
	before := runtime.NumGoroutine()
	attrs := map[string]any{"fields": benchTemplate(), "batch": int64(100), "seed": int64(3)}
	g, err := newGenerate(config(GenerateSpec, "gen", attrs))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := g.Open(ctx, stdlib.ResumeMap{}); err != nil {
		t.Fatal(err)
	}
	var first []stdlib.Record
	for range 3 {
		b, err := g.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, b...)
	}
	if runtime.NumGoroutine() <= before {
		t.Fatalf("%d goroutines while reading, %d before: no workers", runtime.NumGoroutine(), before)
	}
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
	for i, r := range first {
		if r.Pos.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, r.Pos.Offset)
		}
	}

	g2, err := newGenerate(config(GenerateSpec, "gen", attrs))
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.Open(ctx, stdlib.ResumeMap{"gen/0": 149}); err != nil {
		t.Fatal(err)
	}
	defer g2.Close(ctx)
	b, err := g2.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b[0].Pos.Offset != 150 || !reflect.DeepEqual(b[0].Value, first[150].Value) || !reflect.DeepEqual(b[99].Value, first[249].Value) {
		t.Fatalf("resumed after 149: first record %v at %d, want %v at 150", b[0].Value, b[0].Pos.Offset, first[150].Value)
	}
}

// TestGenerateFormat checks the format generator against fmt.Sprintf,
// for the patterns it formats itself and the ones it leaves to fmt.
func TestGenerateFormat(t *testing.T) {
	ri := &stdlib.Call{Name: "random_int", Args: map[string]any{"0": int64(-50), "1": int64(50)}}
	rf := &stdlib.Call{Name: "random_float", Args: map[string]any{"0": 0.0, "1": 1.0}}
	pk := &stdlib.Call{Name: "pick", Args: map[string]any{"0": []any{"x", "yy", true}}}
	cases := []struct {
		pattern string
		args    []any
	}{
		{"u%d", []any{ri}},
		{"%s/%v/%d%%", []any{pk, pk, ri}},
		{"%v and %v", []any{rf, "lit"}},
		{"%05d", []any{ri}},
		{"%s", []any{ri}},
		{"%d %d", []any{ri}},
		{"no verbs", nil},
		{"trailing %", []any{}},
	}
	for _, c := range cases {
		args := map[string]any{"0": c.pattern}
		for i, a := range c.args {
			args[fmt.Sprint(i+1)] = a
		}
		g, err := compileGenerator(&stdlib.Call{Name: "format", Args: args}, 3, 1)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		var subs []genFunc
		for i, a := range c.args {
			sg, err := compileGenerator(a, 3, 1*31+uint64(i+1))
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sg.fn)
		}
		var arena codec.Arena
		for n := range uint64(200) {
			vals := make([]any, len(subs))
			for i, f := range subs {
				vals[i] = f(n, &arena)
			}
			if got, want := g.fn(n, &arena), fmt.Sprintf(c.pattern, vals...); got != want {
				t.Fatalf("%q record %d: %q, want %q", c.pattern, n, got, want)
			}
		}
	}
}

// TestFileSourceParallelDecode reads a file whose batches are decoded in
// parts, with malformed lines, blank lines and CRLF endings, and checks
// every record's value, position and error offset.
func TestFileSourceParallelDecode(t *testing.T) {
	var b strings.Builder
	type want struct {
		id    int64
		line  int64
		start int
		end   int
		bad   bool
	}
	var wants []want
	for i := range 3000 {
		start, line := b.Len(), int64(i+1)
		switch {
		case i%97 == 5:
			b.WriteString("\n") // blank: no record
			continue
		case i%101 == 7:
			fmt.Fprintf(&b, "{\"id\":%d,bad}\n", i)
			wants = append(wants, want{id: int64(i), line: line, start: start, end: b.Len(), bad: true})
			continue
		case i%2 == 0:
			fmt.Fprintf(&b, "{\"id\":%d,\"name\":\"n\\u00e9%d\"}\r\n", i, i)
		default:
			fmt.Fprintf(&b, "{\"id\":%d,\"name\":\"né%d\"}\n", i, i)
		}
		wants = append(wants, want{id: int64(i), line: line, start: start, end: b.Len()})
	}
	p := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := newFileSource(config(FileSourceSpec, "in", map[string]any{"path": p, "batch": int64(1500)}))
	if err != nil {
		t.Fatal(err)
	}
	recs := drain(t, src, nil)
	if len(recs) != len(wants) {
		t.Fatalf("%d records, want %d", len(recs), len(wants))
	}
	for i, r := range recs {
		w := wants[i]
		if r.Pos.Offset != int64(w.end) || r.Line != w.line || r.Start != int64(w.start) {
			t.Fatalf("record %d: offset %d, line %d from byte %d, want %d, %d, %d", i, r.Pos.Offset, r.Line, r.Start, w.end, w.line, w.start)
		}
		if w.bad {
			if r.Err == nil || !strings.Contains(r.Err.Error(), fmt.Sprintf("in.jsonl:%d (byte %d):", w.line, w.start)) {
				t.Fatalf("record %d: error %v, want one at line %d, byte %d", i, r.Err, w.line, w.start)
			}
			continue
		}
		m, ok := r.Value.(map[string]any)
		if r.Err != nil || !ok || m["id"] != w.id || m["name"] != fmt.Sprintf("né%d", w.id) {
			t.Fatalf("record %d: %v (%v), want id %d", i, r.Value, r.Err, w.id)
		}
	}
}
