package avro

import (
	"bytes"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	havro "github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"

	"pipe.dev/pipe/lang/types"
)

// A file written by hamba/avro's own OCF encoder (deflate blocks) reads
// back as the records written, typed by the pipe type of a newer schema:
// a field added with a default is null, a removed one is skipped, an int
// promotes to float; logical types map as TypeOf says.
func TestReaderResolves(t *testing.T) {
	// The fields both schemas have alike.
	const same = `
	  {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
	  {"name": "opt", "type": ["null", "string"]},
	  {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
	  {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 2}},
	  {"name": "day", "type": {"type": "int", "logicalType": "date"}},
	  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
	  {"name": "tags", "type": {"type": "array", "items": "string"}},
	  {"name": "m", "type": {"type": "map", "values": "long"}},
	  {"name": "sub", "type": {"type": "record", "name": "S", "fields": [{"name": "x", "type": "int"}]}}`
	const writer = `{"type": "record", "name": "R", "fields": [
	  {"name": "id", "type": "long"},
	  {"name": "gone", "type": "string"},
	  {"name": "score", "type": "int"},` + same + `
	]}`
	const reader = `{"type": "record", "name": "R", "fields": [
	  {"name": "id", "type": "long"},
	  {"name": "score", "type": "double"},` + same + `,
	  {"name": "added", "type": ["null", "string"], "default": null}
	]}`
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(writer, &buf, ocf.WithCodec(ocf.Deflate), ocf.WithBlockLength(2))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	day := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		rec := map[string]any{
			"id": int64(i), "gone": "x", "score": i * 2, "e": "B", "opt": map[string]any{"string": "o"},
			"dec": big.NewRat(-1234, 100), "fx": [2]byte{1, 2}, "day": day, "ts": ts,
			"tags": []any{"a"}, "m": map[string]any{"k": int64(i)}, "sub": map[string]any{"x": i},
		}
		if i == 1 {
			rec["opt"] = nil
		}
		if err := enc.Encode(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	rs, err := ParseSchema([]byte(reader))
	if err != nil {
		t.Fatal(err)
	}
	typ, err := TypeOf(rs)
	if err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	// The header is not whole until it is.
	if r, err := ParseHeader(data[:10], typ); r != nil || err != nil {
		t.Fatalf("short header: %v %v", r, err)
	}
	r, err := ParseHeader(data, typ)
	if err != nil || r == nil {
		t.Fatal(r, err)
	}
	data = data[r.HeaderLen:]
	var got []map[string]any
	for len(data) > 0 {
		count, n := r.Block(data)
		if n == 0 {
			t.Fatalf("block cut short with %d bytes left", len(data))
		}
		if _, short := r.Block(data[:n-1]); short != 0 {
			t.Fatal("a block one byte short counts as whole")
		}
		err := r.Records(data[:n], func(i int, v map[string]any, err error) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		})
		if err != nil {
			t.Fatal(err)
		}
		if count != 2 && count != 1 {
			t.Errorf("block of %d records", count)
		}
		data = data[n:]
	}
	if len(got) != 3 {
		t.Fatalf("%d records", len(got))
	}
	want := map[string]any{
		"id": int64(1), "score": float64(2), "e": "B", "opt": nil, "dec": "-12.34", "fx": []byte{1, 2},
		"day": day, "ts": ts, "tags": []any{"a"}, "m": map[string]any{"k": int64(1)},
		"sub": map[string]any{"x": int64(1)}, "added": nil,
	}
	if !reflect.DeepEqual(got[1], want) {
		t.Errorf("record 1:\n got %v\nwant %v", got[1], want)
	}
	if got[0]["opt"] != "o" {
		t.Errorf("record 0 opt: %v", got[0]["opt"])
	}
}

// What the file sink's writer writes reads back as the records written.
func TestReaderWriter(t *testing.T) {
	typ := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "at", Type: types.TimestampType},
		&types.Field{Name: "note", Type: types.StringType.WithOptional(true)},
		&types.Field{Name: "sub", Type: types.RecordOf(&types.Field{Name: "f", Type: types.FloatType})},
	)
	w, err := NewWriter(typ)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	recs := []map[string]any{
		{"id": int64(1), "at": at, "note": "n", "sub": map[string]any{"f": 1.5}},
		{"id": int64(2), "at": at, "note": nil, "sub": map[string]any{"f": 2.5}},
	}
	var body []byte
	for _, m := range recs {
		if body, err = w.Append(body, m); err != nil {
			t.Fatal(err)
		}
	}
	file, err := w.Header(nil)
	if err != nil {
		t.Fatal(err)
	}
	file = w.Block(file, len(recs), body)
	r, err := ParseHeader(file, typ)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := r.Records(file[r.HeaderLen:], func(i int, v map[string]any, err error) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recs) {
		t.Errorf("got %v\nwant %v", got, recs)
	}
	// A required field the file lacks fails each record.
	other := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "new", Type: types.IntType})
	r, _ = ParseHeader(file, other)
	var errs []error
	r.Records(file[r.HeaderLen:], func(i int, v map[string]any, err error) { errs = append(errs, err) })
	if len(errs) != 2 || errs[0] == nil || !strings.Contains(errs[0].Error(), "field new: the writer's schema lacks it and it is required") {
		t.Errorf("errors %v", errs)
	}
	if _, err := ParseHeader([]byte("nope, not avro"), typ); err == nil {
		t.Error("not an OCF: no error")
	}
	_ = havro.Null
}
