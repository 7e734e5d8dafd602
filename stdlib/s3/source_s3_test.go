package s3

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// resumer holds positions with identities, as the executor does: a
// position stored for another identity is not applied.
type resumer struct {
	held  map[string]stdlib.Position
	asked map[string]string
}

func (r *resumer) Resume(partition, identity string) (int64, bool) {
	if r.asked == nil {
		r.asked = map[string]string{}
	}
	r.asked[partition] = identity
	p, ok := r.held[partition]
	if !ok || !stdlib.SameIdentity(p.Identity, identity) {
		return 0, false
	}
	return p.Offset, true
}

// readAll opens a source and reads it to its end.
func readAll(t *testing.T, cfg stdlib.Config, res stdlib.Resumer) []stdlib.Record {
	t.Helper()
	s, err := newSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	var out []stdlib.Record
	for {
		b, err := s.Read(t.Context())
		if errors.Is(err, stdlib.ErrEndOfInput) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
}

// where lists each record as key@offset=id.
func where(recs []stdlib.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s@%d=%v", r.Pos.Partition, r.Pos.Offset, r.Value.(map[string]any)["id"]))
	}
	return out
}

// TestSourceResume reads the objects under a prefix with their positions,
// resumes after held ones, and reads a replaced object again.
func TestSourceResume(t *testing.T) {
	e := newEnv(t)
	e.put(t, "in/a.jsonl", []byte("{\"id\":1}\n{\"id\":2}\n\n{\"id\":3}"))
	e.put(t, "in/b.jsonl", []byte("{\"id\":4}\n{\"id\":5}\n"))
	e.put(t, "other/c.jsonl", []byte("{\"id\":9}\n"))
	cfg := config(t, SourceSpec, e.attrs(map[string]any{"prefix": "in/"}))
	cfg.Stage = "src"

	all := readAll(t, cfg, &resumer{})
	want := []string{"in/a.jsonl@9=1", "in/a.jsonl@18=2", "in/a.jsonl@27=3", "in/b.jsonl@9=4", "in/b.jsonl@18=5"}
	if got := where(all); !reflect.DeepEqual(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	if r := all[2]; r.Line != 4 || r.Start != 19 || r.Pos.Source != "src" || r.Time.IsZero() {
		t.Fatalf("record 3: line %d start %d source %q time %v", r.Line, r.Start, r.Pos.Source, r.Time)
	}
	res := &resumer{}
	readAll(t, cfg, res)
	idA := res.asked["in/a.jsonl"]
	if idA == "" {
		t.Fatal("no identity asked for in/a.jsonl")
	}

	// Resumed after id 2 of a and all of b: only id 3 is read.
	res = &resumer{held: map[string]stdlib.Position{
		"in/a.jsonl": {Offset: 18, Identity: idA},
		"in/b.jsonl": {Offset: 18, Identity: res.asked["in/b.jsonl"]},
	}}
	if got := where(readAll(t, cfg, res)); !reflect.DeepEqual(got, []string{"in/a.jsonl@27=3"}) {
		t.Fatalf("resumed read %v, want only id 3", got)
	}

	// a replaced: another identity, read from its start.
	e.put(t, "in/a.jsonl", []byte("{\"id\":6}\n{\"id\":7}\n{\"id\":8}\n"))
	if got := where(readAll(t, cfg, res)); !reflect.DeepEqual(got, []string{"in/a.jsonl@9=6", "in/a.jsonl@18=7", "in/a.jsonl@27=8"}) {
		t.Fatalf("read of the replaced object %v, want all of it", got)
	}
}

// TestSourceCSVResume resumes a CSV object in the middle: its header row
// is read again to name the columns.
func TestSourceCSVResume(t *testing.T) {
	e := newEnv(t)
	e.put(t, "t.csv", []byte("name,id\nx,1\ny,2\nz,3\n"))
	cfg := config(t, SourceSpec, e.attrs(map[string]any{"format": stdlib.Ident("csv")}))
	all := readAll(t, cfg, &resumer{})
	if got := where(all); !reflect.DeepEqual(got, []string{"t.csv@12=1", "t.csv@16=2", "t.csv@20=3"}) {
		t.Fatalf("read %v", got)
	}
	res := &resumer{held: map[string]stdlib.Position{"t.csv": {Offset: 16}}}
	got := readAll(t, cfg, res)
	if len(got) != 1 || !reflect.DeepEqual(got[0].Value, map[string]any{"name": "z", "id": "3"}) || got[0].Pos.Offset != 20 {
		t.Fatalf("resumed read %v, want {name: z, id: 3} at 20", got)
	}
}

// TestSourceWatch keeps listing: an object put after the first listing is
// read at the next poll.
func TestSourceWatch(t *testing.T) {
	e := newEnv(t)
	e.put(t, "a.jsonl", []byte("{\"id\":1}\n"))
	cfg := config(t, SourceSpec, e.attrs(map[string]any{"watch": true, "poll": 100 * time.Millisecond}))
	s, err := newSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context(), &resumer{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) < 2 {
		b, err := s.Read(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, where(b)...)
		if len(got) == 1 {
			e.put(t, "b.jsonl", []byte("{\"id\":2}\n"))
		}
	}
	if !reflect.DeepEqual(got, []string{"a.jsonl@9=1", "b.jsonl@9=2"}) {
		t.Fatalf("read %v", got)
	}
}

// TestParquetSinkToSource writes typed records as Parquet with the sink
// and reads them back with the source: the same values, timestamps,
// optional, list, map, nested and any fields included; then resumes the
// object after its 40th row.
func TestParquetSinkToSource(t *testing.T) {
	e := newEnv(t)
	typ := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType},
		&types.Field{Name: "amount", Type: types.FloatType},
		&types.Field{Name: "ts", Type: types.TimestampType},
		&types.Field{Name: "note", Type: types.StringType.WithOptional(true)},
		&types.Field{Name: "tags", Type: types.ListOf(types.StringType)},
		&types.Field{Name: "counts", Type: types.MapOf(types.IntType)},
		&types.Field{Name: "ship", Type: types.RecordOf(&types.Field{Name: "city", Type: types.StringType})},
		&types.Field{Name: "extra", Type: types.AnyType},
		&types.Field{Name: "raw", Type: types.BytesType},
	)
	cfg := config(t, SinkSpec, e.attrs(map[string]any{"format": stdlib.Ident("parquet"), "prefix": "pq/"}))
	cfg.Input = typ
	s, _ := openSink(t, cfg)
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	var batch []stdlib.Record
	for i := int64(1); i <= 100; i++ {
		v := map[string]any{"id": i, "name": fmt.Sprintf("n%d", i), "amount": float64(i) / 8, "ts": ts.Add(time.Duration(i) * time.Hour),
			"tags": []any{"a", fmt.Sprint(i)}, "counts": map[string]any{"k": i}, "ship": map[string]any{"city": "c"},
			"extra": map[string]any{"x": "y"}, "raw": []byte{byte(i), 0}}
		if i%2 == 0 {
			v["note"] = "even"
		}
		batch = append(batch, stdlib.Record{Value: v, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: i}})
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	src := config(t, SourceSpec, e.attrs(map[string]any{"prefix": "pq/", "format": stdlib.Ident("parquet"), "batch": int64(33)}))
	src.Stage, src.Schema = "src", typ
	got := readAll(t, src, &resumer{})
	if len(got) != 100 {
		t.Fatalf("read %d records, want 100", len(got))
	}
	for i, r := range got {
		want := batch[i].Value.(map[string]any)
		if _, ok := want["note"]; !ok {
			want["note"] = nil
		}
		if r.Err != nil || !reflect.DeepEqual(r.Value, want) {
			t.Fatalf("record %d = %#v (%v), want %#v", i, r.Value, r.Err, want)
		}
		if r.Pos.Offset != int64(i+1) {
			t.Fatalf("record %d at offset %d, want %d", i, r.Pos.Offset, i+1)
		}
	}
	key := got[0].Pos.Partition
	res := &resumer{}
	readAll(t, src, res)
	res.held = map[string]stdlib.Position{key: {Offset: 40, Identity: res.asked[key]}}
	rest := readAll(t, src, res)
	if len(rest) != 60 || rest[0].Value.(map[string]any)["id"] != int64(41) || rest[0].Pos.Offset != 41 {
		t.Fatalf("resumed after row 40: %d records, first %v", len(rest), rest[0].Value)
	}
}
