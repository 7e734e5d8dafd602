package core

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// TestFileSinkAvro: format = avro writes an object container file that
// hamba/avro's own OCF reader decodes to the records written, every field
// kind included; records written after the last checkpoint are cut off
// when the sink opens again (the file stays valid: a committed length ends
// at a block boundary), and appended blocks carry the file's sync marker.
func TestFileSinkAvro(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	p := filepath.Join(dir, "out.avro")
	typ := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType},
		&types.Field{Name: "score", Type: types.FloatType},
		&types.Field{Name: "ok", Type: types.BoolType},
		&types.Field{Name: "raw", Type: types.BytesType},
		&types.Field{Name: "at", Type: types.TimestampType},
		&types.Field{Name: "note", Type: types.StringType.WithOptional(true)},
		&types.Field{Name: "tags", Type: types.ListOf(types.StringType)},
		&types.Field{Name: "attrs", Type: types.MapOf(types.IntType)},
		&types.Field{Name: "sub", Type: types.RecordOf(&types.Field{Name: "x", Type: types.IntType})},
	)
	typ.Name = "Order"
	cfg := sinkConfig(p, stdlib.AtLeastOnce, map[string]any{"format": "avro"})
	cfg.Schema = typ
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	rec := func(i int) stdlib.Record {
		var note any
		if i%2 == 0 {
			note = "n" + strings.Repeat("x", i)
		}
		return stdlib.Record{Value: map[string]any{
			"id": int64(i), "name": "r", "score": float64(i) / 4, "ok": i%3 == 0, "raw": []byte{byte(i)},
			"at": at.Add(time.Duration(i) * time.Second), "note": note, "tags": []any{"a", "b"},
			"attrs": map[string]any{"k": int64(i)}, "sub": map[string]any{"x": int64(-i)},
		}, Pos: stdlib.Position{Source: "src", Partition: "a", Offset: int64(i)}}
	}
	batch := func(from, to int) []stdlib.Record {
		var out []stdlib.Record
		for i := from; i < to; i++ {
			out = append(out, rec(i))
		}
		return out
	}
	s, err := newFileSink(cfg)
	must(t, err)
	_, err = s.Open(ctx)
	must(t, err)
	must(t, s.Write(ctx, batch(0, 3)))
	must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "src", Partition: "a", Offset: 2}}}))
	must(t, s.Write(ctx, batch(3, 5)))
	must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 2, Positions: []stdlib.Position{{Source: "src", Partition: "a", Offset: 4}}}))
	// Written and flushed but never committed: cut off at the next open.
	must(t, s.Write(ctx, batch(100, 102)))
	must(t, s.flush())
	s.f.Close()

	s, err = newFileSink(cfg)
	must(t, err)
	_, err = s.Open(ctx)
	must(t, err)
	must(t, s.Write(ctx, batch(5, 7)))
	must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 3, Positions: []stdlib.Position{{Source: "src", Partition: "a", Offset: 6}}}))
	must(t, s.Close(ctx))

	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	dec, err := ocf.NewDecoder(f)
	must(t, err)
	if !strings.Contains(dec.Schema().String(), `"name":"Order"`) {
		t.Errorf("schema %s", dec.Schema())
	}
	var got []map[string]any
	for dec.HasNext() {
		var m map[string]any
		must(t, dec.Decode(&m))
		got = append(got, m)
	}
	must(t, dec.Error())
	if len(got) != 7 {
		t.Fatalf("read %d records, want 7: %v", len(got), got)
	}
	for i, m := range got {
		var note any
		if i%2 == 0 {
			note = "n" + strings.Repeat("x", i)
		}
		want := map[string]any{
			"id": int64(i), "name": "r", "score": float64(i) / 4, "ok": i%3 == 0, "raw": []byte{byte(i)},
			"at": at.Add(time.Duration(i) * time.Second), "note": note, "tags": []any{"a", "b"},
			"attrs": map[string]any{"k": int64(i)}, "sub": map[string]any{"x": int64(-i)},
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("record %d:\n got %#v\nwant %#v", i, m, want)
		}
	}

	// exactly_once is refused: no kill test backs it for this format.
	if _, err := newFileSink(sinkConfig(p, stdlib.ExactlyOnce, map[string]any{"format": "avro"})); err == nil || !strings.Contains(err.Error(), "at least once") {
		t.Errorf("exactly_once avro sink: %v", err)
	}
}
