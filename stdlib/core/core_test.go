package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// benchFields is the template of the benchmark record
// {"id":1,"user":"u1","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}.
func benchFields() map[string]any {
	return map[string]any{
		"id":      &stdlib.Call{Name: "seq"},
		"user":    &stdlib.Call{Name: "format", Args: map[string]any{"0": "u%d", "1": &stdlib.Call{Name: "random_int", Args: map[string]any{"0": int64(1), "1": int64(1000)}}}},
		"amount":  &stdlib.Call{Name: "random_float", Args: map[string]any{"0": 1.0, "1": 100.0}},
		"country": &stdlib.Call{Name: "pick", Args: map[string]any{"0": []any{"NL", "DE", "FR", "US"}}},
		"event":   "purchase",
		"ts":      &stdlib.Call{Name: "timestamp", Args: map[string]any{"start": "2024-01-01T00:00:01Z", "step": time.Second}},
	}
}

// config is the Config of a one-task stage of spec with attrs, checked as
// the executor checks it (defaults filled in); it panics on bad attrs.
func config(spec *stdlib.Spec, stage string, attrs map[string]any) stdlib.Config {
	a, err := spec.Values(attrs)
	if err != nil {
		panic(fmt.Sprintf("stage %q: %v", stage, err))
	}
	return stdlib.Config{Pipeline: "test", Stage: stage, Attrs: a, Tasks: 1}
}

// drain reads src until its end, checking that it ends by itself.
func drain(t *testing.T, src stdlib.Source, resume stdlib.Resumer) []stdlib.Record {
	t.Helper()
	out, err := readAll(t, src, resume)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readAll opens src and reads it to its end; it returns the records read
// until the first error.
func readAll(t *testing.T, src stdlib.Source, resume stdlib.Resumer) ([]stdlib.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if resume == nil {
		resume = stdlib.ResumeMap{}
	}
	if err := src.Open(ctx, resume); err != nil {
		return nil, err
	}
	defer src.Close(ctx)
	var out []stdlib.Record
	for {
		b, err := src.Read(ctx)
		if errors.Is(err, stdlib.ErrEndOfInput) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, b...)
	}
}

// openFollowed opens a source that never ends by itself, for reads until
// the returned context's deadline or cancel.
func openFollowed(t *testing.T, src stdlib.Source) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	if err := src.Open(ctx, stdlib.ResumeMap{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close(context.Background()) })
	return ctx, cancel
}

func TestRegistered(t *testing.T) {
	for _, c := range []struct {
		kind stdlib.Kind
		name string
	}{
		{stdlib.SourceKind, "generate"}, {stdlib.SourceKind, "file"}, {stdlib.SourceKind, "stdin"},
		{stdlib.SinkKind, "stdout"}, {stdlib.SinkKind, "file"}, {stdlib.SinkKind, "discard"},
	} {
		s := stdlib.Default.Lookup(c.kind, c.name)
		if s == nil {
			t.Errorf("%s %q not registered", c.kind, c.name)
			continue
		}
		if s.Summary == "" {
			t.Errorf("%s %q has no summary", c.kind, c.name)
		}
		for _, p := range s.Params {
			if p.Doc == "" {
				t.Errorf("%s %q: param %q has no doc", c.kind, c.name, p.Name)
			}
		}
		if c.kind == stdlib.SinkKind && len(s.Delivery) == 0 {
			t.Errorf("sink %q declares no delivery", c.name)
		}
	}
}

func TestGenerate(t *testing.T) {
	attrs := map[string]any{"count": int64(10), "seed": int64(7), "batch": int64(3), "fields": benchFields()}
	g, err := newGenerate(config(GenerateSpec, "gen", attrs))
	if err != nil {
		t.Fatal(err)
	}
	recs := drain(t, g, nil)
	if len(recs) != 10 {
		t.Fatalf("got %d records, want 10", len(recs))
	}
	first := recs[0].Value.(map[string]any)
	if first["id"] != int64(1) || first["event"] != "purchase" || first["ts"] != time.Date(2024, 1, 1, 0, 0, 1, 0, time.UTC) {
		t.Errorf("first record %v", first)
	}
	if u := first["user"].(string); !strings.HasPrefix(u, "u") {
		t.Errorf("user %q", u)
	}
	if a := first["amount"].(float64); a < 1 || a >= 100 || a*100 != float64(int64(a*100+0.5)) && a*100-float64(int64(a*100)) > 1e-6 {
		t.Errorf("amount %v", a)
	}
	for i, r := range recs {
		if r.Pos != (stdlib.Position{Source: "gen", Partition: "gen/0", Offset: int64(i)}) {
			t.Fatalf("record %d position %v", i, r.Pos)
		}
		if id := r.Value.(map[string]any)["id"]; id != int64(i+1) {
			t.Fatalf("record %d id %v", i, id)
		}
	}
	// Same seed, same records; resuming after offset 5 regenerates 6..9.
	g2, _ := newGenerate(config(GenerateSpec, "gen", attrs))
	again := drain(t, g2, stdlib.ResumeMap{"gen/0": 5})
	if len(again) != 4 || !reflect.DeepEqual(again[0].Value, recs[6].Value) || !reflect.DeepEqual(again[3].Value, recs[9].Value) {
		t.Fatalf("resume: got %d records, first %v want %v", len(again), again[0].Value, recs[6].Value)
	}
	// Another seed gives other random values.
	attrs["seed"] = int64(8)
	g3, _ := newGenerate(config(GenerateSpec, "gen", attrs))
	other := drain(t, g3, nil)
	same := 0
	for i := range other {
		if other[i].Value.(map[string]any)["amount"] == recs[i].Value.(map[string]any)["amount"] {
			same++
		}
	}
	if same == len(other) {
		t.Error("seed does not change the random fields")
	}
}

func TestGenerateTasks(t *testing.T) {
	seen := map[int64]bool{}
	for task := range 3 {
		cfg := config(GenerateSpec, "gen", map[string]any{"count": int64(100), "fields": map[string]any{"id": &stdlib.Call{Name: "seq", Args: map[string]any{"start": int64(0)}}}})
		cfg.Task, cfg.Tasks = task, 3
		g, err := newGenerate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range drain(t, g, nil) {
			id := r.Value.(map[string]any)["id"].(int64)
			if seen[id] || id%3 != int64(task) {
				t.Fatalf("task %d produced id %d", task, id)
			}
			seen[id] = true
			if r.Pos.Partition != fmt.Sprintf("gen/%d", task) {
				t.Fatalf("partition %q", r.Pos.Partition)
			}
		}
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct ids, want 100", len(seen))
	}
}

func TestGenerateRate(t *testing.T) {
	g, err := newGenerate(config(GenerateSpec, "gen", map[string]any{"count": int64(60), "rate": 200.0, "fields": map[string]any{"x": int64(1)}}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n := len(drain(t, g, nil)); n != 60 {
		t.Fatalf("got %d records", n)
	}
	// 60 records at 200/s come in batches of 20 due at 0, 0.1 s and 0.2 s.
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Errorf("rate not applied: 60 records in %v", d)
	}
}

func TestGenerateSpec(t *testing.T) {
	out := GenerateSpec.Output(map[string]any{"fields": benchFields()})
	want := "{amount: float, country: string, event: string, id: int, ts: timestamp, user: string}"
	if out.String() != want {
		t.Errorf("output %s, want %s", out, want)
	}
	errs := GenerateSpec.Check(map[string]any{
		"count": int64(-1),
		"fields": map[string]any{
			"a": &stdlib.Call{Name: "nope"},
			"b": &stdlib.Call{Name: "random_int", Args: map[string]any{"0": int64(5), "1": int64(1)}},
			"c": &stdlib.Call{Name: "pick", Args: map[string]any{"0": []any{}}},
			"d": &stdlib.Call{Name: "timestamp", Args: map[string]any{"start": "soon"}},
			"e": &stdlib.Call{Name: "seq", Args: map[string]any{"start": "x"}},
		},
	})
	got := map[string]string{}
	for _, e := range errs {
		got[e.Attr] = e.Message
	}
	for attr, msg := range map[string]string{
		"count": "must not be negative", "fields.a": `unknown generator "nope"`, "fields.b": "below min",
		"fields.c": "non-empty list", "fields.d": "RFC 3339", "fields.e": "start must be an int",
	} {
		if !strings.Contains(got[attr], msg) {
			t.Errorf("check %s: got %q, want %q", attr, got[attr], msg)
		}
	}
	u, _ := compileGenerator(&stdlib.Call{Name: "uuid"}, 1, 1)
	var a codec.Arena
	if s := u.fn(0, &a).(string); len(s) != 36 || s[14] != '4' || s != u.fn(0, &a) {
		t.Errorf("uuid %q", s)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func values(recs []stdlib.Record) []any {
	var out []any
	for _, r := range recs {
		if r.Err != nil {
			out = append(out, "error")
			continue
		}
		out = append(out, r.Value)
	}
	return out
}

func TestFileSourceJSON(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "in.jsonl")
	data := "{\"a\":1}\n\n{bad\r\n{\"a\":2}\n{\"a\":3}"
	writeFile(t, p, data)
	src, err := newFileSource(config(FileSourceSpec, "in", map[string]any{"path": p, "batch": int64(2)}))
	if err != nil {
		t.Fatal(err)
	}
	res := &stored{}
	recs := drain(t, src, res)
	want := []any{map[string]any{"a": int64(1)}, "error", map[string]any{"a": int64(2)}, map[string]any{"a": int64(3)}}
	if !reflect.DeepEqual(values(recs), want) {
		t.Fatalf("got %v, want %v", values(recs), want)
	}
	offsets := []int64{8, 15, 23, int64(len(data))}
	for i, r := range recs {
		if r.Pos.Offset != offsets[i] || !strings.HasPrefix(r.Pos.Partition, p+"#") || r.Pos.Source != "in" {
			t.Errorf("record %d position %v, want offset %d", i, r.Pos, offsets[i])
		}
	}
	// Records carry the line number and the offset the line starts at;
	// an error names both.
	lines, starts := []int64{1, 3, 4, 5}, []int64{0, 9, 15, 23}
	for i, r := range recs {
		if r.Line != lines[i] || r.Start != starts[i] {
			t.Errorf("record %d at line %d byte %d, want line %d byte %d", i, r.Line, r.Start, lines[i], starts[i])
		}
	}
	if string(recs[1].Raw) != "{bad" || !strings.Contains(recs[1].Err.Error(), "in.jsonl:3 (byte 9): json:") {
		t.Errorf("bad line: raw %q err %v", recs[1].Raw, recs[1].Err)
	}
	// Resume after the second record: line numbers count the lines
	// before the resume position.
	src2, _ := newFileSource(config(FileSourceSpec, "in", map[string]any{"path": p}))
	recs = drain(t, src2, checkpoint(res, recs[:2]))
	if !reflect.DeepEqual(values(recs), want[2:]) {
		t.Fatalf("resume: got %v", values(recs))
	}
	if recs[0].Line != 4 || recs[0].Start != 15 || recs[1].Line != 5 || recs[1].Start != 23 {
		t.Errorf("resumed records at lines %d, %d (bytes %d, %d), want 4, 5 (15, 23)", recs[0].Line, recs[1].Line, recs[0].Start, recs[1].Start)
	}
}

func TestFileSourceCSVGlobTasks(t *testing.T) {
	dir := t.TempDir()
	for i := range 6 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("part-%d.csv", i)), fmt.Sprintf("id,name\n%d,a\n%d,\"b, c\"\n", 2*i, 2*i+1))
	}
	schema := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "name", Type: types.StringType})
	ids := map[int64]int{}
	for task := range 2 {
		cfg := config(FileSourceSpec, "in", map[string]any{"path": filepath.Join(dir, "*.csv"), "format": stdlib.Ident("csv"), "header": true})
		cfg.Schema, cfg.Task, cfg.Tasks = schema, task, 2
		src, err := newFileSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range drain(t, src, nil) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			ids[r.Value.(map[string]any)["id"].(int64)]++
		}
	}
	if len(ids) != 12 {
		t.Fatalf("ids %v", ids)
	}
	// Resuming in the middle of a CSV file still knows the header.
	p := filepath.Join(dir, "part-0.csv")
	cfg := config(FileSourceSpec, "in", map[string]any{"path": p, "format": stdlib.Ident("csv"), "header": true})
	cfg.Schema = schema
	src, _ := newFileSource(cfg)
	res := &stored{}
	recs := drain(t, src, res)
	src, _ = newFileSource(cfg)
	recs = drain(t, src, checkpoint(res, recs[:1]))
	if want := []any{map[string]any{"id": int64(1), "name": "b, c"}}; !reflect.DeepEqual(values(recs), want) {
		t.Fatalf("got %v", values(recs))
	}
	if _, err := newFileSource(config(FileSourceSpec, "in", map[string]any{"path": "["})); err == nil {
		t.Error("bad glob accepted")
	}
	missing, _ := newFileSource(config(FileSourceSpec, "in", map[string]any{"path": filepath.Join(dir, "none-*.jsonl")}))
	if err := missing.Open(t.Context(), stdlib.ResumeMap{}); err == nil || !strings.Contains(err.Error(), "no file matches") {
		t.Errorf("missing files: %v", err)
	}
}

func TestFileSourceFollow(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log.txt")
	writeFile(t, p, "old\n")
	src, err := newFileSource(config(FileSourceSpec, "in", map[string]any{
		"path": filepath.Join(dir, "*.txt"), "format": stdlib.Ident("lines"), "follow": true,
		"poll": 10 * time.Millisecond, "start": stdlib.Ident("end"),
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := openFollowed(t, src)
	go func() {
		time.Sleep(30 * time.Millisecond)
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("new 1\nnew ")
		f.Sync()
		time.Sleep(30 * time.Millisecond)
		f.WriteString("2\n")
		f.Close()
		writeFile(t, filepath.Join(dir, "later.txt"), "other\n")
	}()
	var got []string
	for len(got) < 3 {
		recs, err := src.Read(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		for _, r := range recs {
			got = append(got, r.Value.(map[string]any)["value"].(string))
		}
	}
	if want := []string{"new 1", "new 2", "other"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	cancel()
	if _, err := src.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v", err)
	}
}

// TestFileSourceCSVHeader checks the header modes: rows map to columns by
// the header's names, and a header not matching the schema fails at the
// first line, naming the columns.
func TestFileSourceCSVHeader(t *testing.T) {
	dir := t.TempDir()
	schema := types.RecordOf(&types.Field{Name: "first", Type: types.StringType}, &types.Field{Name: "last", Type: types.StringType})
	ada := map[string]any{"first": "Ada", "last": "Lovelace"}
	alan := map[string]any{"first": "Alan", "last": "Turing"}
	for _, tc := range []struct {
		name, data string
		header     any // the attribute; nil: absent
		want       []any
		err        string
	}{
		{"by name", "last,first\nLovelace,Ada\n\nTuring,Alan\n", nil, []any{ada, alan}, ""},
		{"leading blank lines", "\r\n\nlast,first\nLovelace,Ada\n", true, []any{ada}, ""},
		{"typo", "first,lsat\nAda,Lovelace\n", nil, nil, `h.csv:1 (byte 0): csv header does not match the declared columns (first, last): unknown column "lsat"; missing column "last"`},
		{"no header", "Ada,Lovelace\n", nil, nil, `unknown columns "Ada", "Lovelace"`},
		{"false", "Ada,Lovelace\nlast,first\n", false, []any{ada, map[string]any{"first": "last", "last": "first"}}, ""},
		{"auto header", "\nlast,first\nLovelace,Ada\n", stdlib.Ident("auto"), []any{ada}, ""},
		{"auto data", "Ada,Lovelace\nAlan,Turing", stdlib.Ident("auto"), []any{ada, alan}, ""},
		{"auto typo is data", "first,lsat\n", "auto", []any{map[string]any{"first": "first", "last": "lsat"}}, ""},
		{"bad row", "first,last\nAda,Lovelace\n\nAlan\n", nil, []any{ada, "error"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "h.csv")
			writeFile(t, p, tc.data)
			attrs := map[string]any{"path": p, "format": stdlib.Ident("csv")}
			if tc.header != nil {
				attrs["header"] = tc.header
			}
			cfg := config(FileSourceSpec, "in", attrs)
			cfg.Schema = schema
			src, err := newFileSource(cfg)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := readAll(t, src, stdlib.ResumeMap{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := values(recs); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// A bad row's error names its line; so does one after a resume.
	p := filepath.Join(dir, "rows.csv")
	writeFile(t, p, "last,first\nLovelace,Ada\n\nTuring\nx,y\n")
	cfg := config(FileSourceSpec, "in", map[string]any{"path": p, "format": stdlib.Ident("csv")})
	cfg.Schema = schema
	res := &stored{}
	for _, resumed := range []bool{false, true} {
		src, _ := newFileSource(cfg)
		recs, err := readAll(t, src, res)
		if err != nil {
			t.Fatal(err)
		}
		want := 3
		if resumed {
			want = 2
		}
		if len(recs) != want {
			t.Fatalf("resumed %v: %d records, want %d", resumed, len(recs), want)
		}
		bad := recs[len(recs)-2]
		if want := "rows.csv:4 (byte 25): csv: row has 1 fields, want 2"; bad.Err == nil || !strings.Contains(bad.Err.Error(), want) {
			t.Errorf("resumed %v: error %v, want %q", resumed, bad.Err, want)
		}
		if last := recs[len(recs)-1].Value; !reflect.DeepEqual(last, map[string]any{"first": "y", "last": "x"}) {
			t.Errorf("resumed %v: last record %v", resumed, last)
		}
		res = checkpoint(res, recs[:1]) // after Lovelace,Ada
	}
}

// TestFileSourceCSVHeaderLater checks that the header row of a followed
// file that was empty when found is read when it arrives.
func TestFileSourceCSVHeaderLater(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "late.csv")
	writeFile(t, p, "")
	cfg := config(FileSourceSpec, "in", map[string]any{"path": p, "format": stdlib.Ident("csv"), "follow": true, "poll": 5 * time.Millisecond})
	cfg.Schema = types.RecordOf(&types.Field{Name: "a", Type: types.StringType}, &types.Field{Name: "b", Type: types.StringType})
	src, err := newFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := openFollowed(t, src)
	writeFile(t, p, "b,a\n1,2\n")
	recs, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(recs); !reflect.DeepEqual(got, []any{map[string]any{"a": "2", "b": "1"}}) {
		t.Fatalf("got %v", got)
	}
}

// TestSourceInvalidUTF8 checks that invalid UTF-8 is a record error naming
// its line and offset, or kept as it is with invalid_utf8 = keep.
func TestSourceInvalidUTF8(t *testing.T) {
	p := filepath.Join(t.TempDir(), "u.txt")
	writeFile(t, p, "fine\nbad \xff\n")
	for _, tc := range []struct {
		format, keep string
		want         string
	}{
		{"lines", "", "u.txt:2 (byte 5): lines: invalid UTF-8 at offset 4"},
		{"lines", "keep", "bad \xff"},
	} {
		attrs := map[string]any{"path": p, "format": stdlib.Ident(tc.format)}
		if tc.keep != "" {
			attrs["invalid_utf8"] = stdlib.Ident(tc.keep)
		}
		src, err := newFileSource(config(FileSourceSpec, "in", attrs))
		if err != nil {
			t.Fatal(err)
		}
		recs := drain(t, src, nil)
		if len(recs) != 2 {
			t.Fatalf("%d records", len(recs))
		}
		if tc.keep == "" {
			if err := recs[1].Err; !errors.Is(err, codec.ErrInvalidUTF8) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		} else if v := recs[1].Value.(map[string]any)["value"]; v != tc.want {
			t.Errorf("kept %q, want %q", v, tc.want)
		}
	}
	// stdin: the same, for json.
	r, w, _ := os.Pipe()
	go func() { w.WriteString("{\"a\":\"\xc0\"}\n"); w.Close() }()
	src, _ := newStdin(config(StdinSpec, "in", map[string]any{}), r)
	recs := drain(t, src, nil)
	if len(recs) != 1 || !errors.Is(recs[0].Err, codec.ErrInvalidUTF8) || !strings.Contains(recs[0].Err.Error(), "stdin:1 (byte 0): json: offset 6") {
		t.Errorf("stdin: %v", values(recs))
	}
}

// TestStdinCSVHeader checks stdin's header row: mapped by name, and a
// mismatch is an error of the run, not a record.
func TestStdinCSVHeader(t *testing.T) {
	schema := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "name", Type: types.StringType})
	for _, tc := range []struct {
		in   string
		want []any
		err  string
	}{
		{"name,id\nAda,1\n", []any{map[string]any{"id": int64(1), "name": "Ada"}}, ""},
		{"id,nme\n1,Ada\n", nil, `stdin "in": stdin:1 (byte 0): csv header does not match the declared columns (id, name): unknown column "nme"; missing column "name"`},
	} {
		r, w, _ := os.Pipe()
		go func() { w.WriteString(tc.in); w.Close() }()
		cfg := config(StdinSpec, "in", map[string]any{"format": stdlib.Ident("csv")})
		cfg.Schema = schema
		src, err := newStdin(cfg, r)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := readAll(t, src, stdlib.ResumeMap{})
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(values(recs), tc.want) {
			t.Errorf("%q: got %v, %v", tc.in, values(recs), err)
		}
	}
}

func TestStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	src, err := newStdin(config(StdinSpec, "in", map[string]any{}), r) // json, as for file

	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.WriteString("{\"a\":1}\n{\"a\":")
		time.Sleep(20 * time.Millisecond)
		w.WriteString("2}\nnope\n{\"a\":3}")
		w.Close()
	}()
	recs := drain(t, src, nil)
	want := []any{map[string]any{"a": int64(1)}, map[string]any{"a": int64(2)}, "error", map[string]any{"a": int64(3)}}
	if !reflect.DeepEqual(values(recs), want) {
		t.Fatalf("got %v", values(recs))
	}
	if recs[1].Pos.Offset != 16 || recs[1].Pos.Partition != "stdin" || string(recs[2].Raw) != "nope" {
		t.Errorf("positions %v raw %q", recs[1].Pos, recs[2].Raw)
	}
	// Fed again with a stored position, it reads the new stream whole: a
	// stream is never resumed.
	r2, w2, _ := os.Pipe()
	go func() { w2.WriteString("{\"a\":1}\n{\"a\":2}\nnope\n{\"a\":3}"); w2.Close() }()
	src2, _ := newStdin(config(StdinSpec, "in", map[string]any{"format": stdlib.Ident("lines")}), r2)
	recs = drain(t, src2, stdlib.ResumeMap{"stdin": 16})
	if got := values(recs); len(got) != 4 || !reflect.DeepEqual(got[0], map[string]any{"value": `{"a":1}`}) {
		t.Fatalf("resume: got %v", got)
	}
}

func TestStdout(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(StdoutSpec, "out", map[string]any{"format": stdlib.Ident("csv"), "header": true})
	s, err := newStdout(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, []stdlib.Record{
		{Value: map[string]any{"b": int64(1), "a": "x"}},
		{Value: "not a record"},
		{Value: map[string]any{"b": 2.5, "a": "y,z"}},
	})
	var rerr stdlib.RecordErrors
	if !errors.As(err, &rerr) || len(rerr) != 1 || rerr[0].Index != 1 {
		t.Fatalf("write: %v", err)
	}
	s.Close(ctx)
	b, _ := os.ReadFile(f.Name())
	if string(b) != "a,b\nx,1\n\"y,z\",2.5\n" {
		t.Fatalf("stdout got %q", b)
	}
}

func TestDiscard(t *testing.T) {
	s, _ := DiscardSpec.NewSink(config(DiscardSpec, "d", nil))
	if err := s.Write(t.Context(), make([]stdlib.Record, 5)); err != nil {
		t.Fatal(err)
	}
	if s.(*discard).n != 5 {
		t.Fatal("discard did not count")
	}
}

func recs(from, to int, source, partition string) []stdlib.Record {
	var out []stdlib.Record
	for i := from; i < to; i++ {
		out = append(out, stdlib.Record{Value: map[string]any{"i": int64(i)}, Pos: stdlib.Position{Source: source, Partition: partition, Offset: int64(i)}})
	}
	return out
}

func sinkConfig(path string, delivery stdlib.Delivery, attrs map[string]any) stdlib.Config {
	a := map[string]any{"path": path}
	for k, v := range attrs {
		a[k] = v
	}
	cfg := config(FileSinkSpec, "out", a)
	cfg.Delivery = delivery
	return cfg
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFileSinkRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ev.jsonl")
	ctx := t.Context()
	open := func() *fileSink {
		cfg := sinkConfig(p, stdlib.ExactlyOnce, map[string]any{"rotate_size": int64(20)})
		cfg.Tasks, cfg.Task = 2, 1
		s, err := newFileSink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	must(t, s.Write(ctx, recs(0, 5, "src", "a"))) // 8 bytes a line: 2 per file
	must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 1}))
	must(t, s.Write(ctx, recs(5, 9, "src", "a")))
	s.Close(ctx) // crash: files 4 and 5 are uncommitted
	files, _ := filepath.Glob(filepath.Join(dir, "ev-t1-*.jsonl"))
	if len(files) != 5 {
		t.Fatalf("before recovery: %v", files)
	}
	s = open()
	s.Close(ctx)
	files, _ = filepath.Glob(filepath.Join(dir, "ev-t1-*.jsonl"))
	var all []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all = append(all, filepath.Base(f)+"="+strings.ReplaceAll(string(b), "\n", " "))
	}
	want := []string{`ev-t1-000001.jsonl={"i":0} {"i":1} `, `ev-t1-000002.jsonl={"i":2} {"i":3} `, `ev-t1-000003.jsonl={"i":4} `}
	if !reflect.DeepEqual(all, want) {
		t.Fatalf("after recovery:\n%q\nwant\n%q", all, want)
	}
	if _, err := os.Stat(filepath.Join(dir, ".ev-t1.jsonl.pipe-sink.json")); err != nil {
		t.Errorf("state file: %v", err)
	}
}

func TestFileSinkCSVInterval(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "o.csv")
	ctx := t.Context()
	s, err := newFileSink(sinkConfig(p, stdlib.AtLeastOnce, map[string]any{"format": stdlib.Ident("csv"), "header": true, "rotate_interval": time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, s.Write(ctx, recs(0, 2, "src", "a")))
	time.Sleep(5 * time.Millisecond)
	must(t, s.Write(ctx, recs(2, 3, "src", "a")))
	must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 1}))
	s.Close(ctx)
	b1, _ := os.ReadFile(filepath.Join(dir, "o-000001.csv"))
	b2, _ := os.ReadFile(filepath.Join(dir, "o-000002.csv"))
	if string(b1) != "i\n0\n1\n" || string(b2) != "i\n2\n" {
		t.Fatalf("files %q %q", b1, b2)
	}
}

// TestResolvedReferenceAttrs covers attributes written as references
// (count = "${env:N}"), which reach Spec.Values as strings.
func TestResolvedReferenceAttrs(t *testing.T) {
	g, err := newGenerate(config(GenerateSpec, "gen", map[string]any{"count": "25", "rate": "0", "seed": "3", "batch": "10", "fields": map[string]any{"x": int64(1)}}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(drain(t, g, nil)); n != 25 {
		t.Fatalf("got %d records, want 25", n)
	}
	if _, err := GenerateSpec.Values(map[string]any{"count": "lots"}); err == nil || err.Error() != `attribute "count": not an int` {
		t.Errorf("bad count: %v", err)
	}
	s, err := newFileSink(sinkConfig(filepath.Join(t.TempDir(), "o.jsonl"), stdlib.ExactlyOnce, map[string]any{"rotate_size": "1.5KiB", "rotate_interval": "1d", "header": "false"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.rotSize != 1536 || s.rotEvery != 24*time.Hour {
		t.Errorf("rotate_size %d rotate_interval %v", s.rotSize, s.rotEvery)
	}
	if _, err := FileSourceSpec.Values(map[string]any{"path": "x", "follow": "sometimes"}); err == nil {
		t.Error("bad follow accepted")
	}
}
