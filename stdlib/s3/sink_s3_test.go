package s3

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/parquet-go/parquet-go"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// recs returns records with ids first..last of source "in", partition
// "p0", offsets equal to their ids.
func recs(first, last int64) []stdlib.Record {
	var out []stdlib.Record
	for id := first; id <= last; id++ {
		out = append(out, stdlib.Record{Value: map[string]any{"id": id, "name": fmt.Sprintf("n%d", id)},
			Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: id}})
	}
	return out
}

func openSink(t *testing.T, cfg stdlib.Config) (*sink, []stdlib.Position) {
	t.Helper()
	return stdlibtest.OpenSink[*sink](t)(newSink(cfg))
}

// ids reads the JSON lines objects under prefix and returns the ids they
// hold, in key and line order.
func (e *s3Env) ids(t *testing.T, prefix string) []int64 {
	var out []int64
	for _, k := range e.keys(t, prefix) {
		for _, l := range strings.Split(strings.TrimSpace(string(e.get(t, k))), "\n") {
			var m struct{ ID int64 }
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%s: %q: %v", k, l, err)
			}
			out = append(out, m.ID)
		}
	}
	return out
}

// TestSinkCommitAndRecover writes a checkpoint, then objects that no
// checkpoint covers (rotated and uploaded ahead of it), and opens the
// sink again as after a crash: the uncommitted objects are gone, the held
// positions are those of the checkpoint, and the replay writes objects
// named as before.
func TestSinkCommitAndRecover(t *testing.T) {
	e := newEnv(t)
	cfg := config(t, SinkSpec, e.attrs(map[string]any{"prefix": "out/", "rotate_records": int64(4)}))
	s, held := openSink(t, cfg)
	if len(held) != 0 {
		t.Fatalf("held %v on a new bucket", held)
	}
	if err := s.Write(t.Context(), recs(1, 10)); err != nil {
		t.Fatal(err)
	}
	cp := stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: 10, Identity: "id1"}}}
	if err := s.Checkpoint(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	committed := e.keys(t, "out/")
	want := []string{"out/in.p0.0000000001-0000000004.jsonl", "out/in.p0.0000000005-0000000008.jsonl", "out/in.p0.0000000009-0000000010.jsonl"}
	if !reflect.DeepEqual(committed, want) {
		t.Fatalf("objects %v, want %v", committed, want)
	}
	// 11..30: rotations upload 11-14, ... ahead of the next checkpoint
	// once flushBytes is passed; force it by lowering the threshold.
	if err := s.Write(t.Context(), recs(11, 30)); err != nil {
		t.Fatal(err)
	}
	if err := s.upload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.keys(t, "out/")); n <= len(committed) {
		t.Fatalf("%d objects after uploading uncommitted ones, want more than %d", n, len(committed))
	}
	s.Close(t.Context()) // a crash: no checkpoint

	s2, held := openSink(t, cfg)
	if !reflect.DeepEqual(held, cp.Positions) {
		t.Fatalf("held %v, want %v", held, cp.Positions)
	}
	if got := e.keys(t, "out/"); !reflect.DeepEqual(got, committed) {
		t.Fatalf("after recovery objects %v, want the committed %v", got, committed)
	}
	if err := s2.Write(t.Context(), recs(11, 30)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 2, Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: 30, Identity: "id1"}}}); err != nil {
		t.Fatal(err)
	}
	if got := e.ids(t, "out/"); !reflect.DeepEqual(got, stdlibtest.Seq(1, 31)) {
		t.Fatalf("ids %v, want 1..30 once each", got)
	}
}

// TestSinkAbortsMultipart: an object pending in the commit record whose
// multipart upload was started but not completed (a crash during the
// upload) has its upload aborted at Open.
func TestSinkAbortsMultipart(t *testing.T) {
	e := newEnv(t)
	cfg := config(t, SinkSpec, e.attrs(nil))
	s, _ := openSink(t, cfg)
	key := "in.p0.0000000001-0000000100.jsonl"
	core := minio.Core{Client: e.cli}
	id, err := core.NewMultipartUpload(t.Context(), e.bucket, key, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("x"), minPartSize)
	if _, err := core.PutObjectPart(t.Context(), e.bucket, key, id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatal(err)
	}
	s.state.Pending = []string{key}
	if err := s.writeState(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := incomplete(t, e); n != 1 {
		t.Fatalf("%d incomplete uploads before Open, want 1", n)
	}
	openSink(t, cfg)
	if n := incomplete(t, e); n != 0 {
		t.Fatalf("%d incomplete uploads after Open, want 0", n)
	}
}

func incomplete(t *testing.T, e *s3Env) int {
	n := 0
	for u := range e.cli.ListIncompleteUploads(t.Context(), e.bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		n++
	}
	return n
}

// TestSinkMultipartObject writes an object larger than part_size: it is
// uploaded in parts and reads back whole.
func TestSinkMultipartObject(t *testing.T) {
	e := newEnv(t)
	cfg := config(t, SinkSpec, e.attrs(map[string]any{"part_size": int64(minPartSize)}))
	s, _ := openSink(t, cfg)
	big := strings.Repeat("y", 1000)
	var batch []stdlib.Record
	for i := int64(1); i <= 12000; i++ { // ~12MB: three parts
		batch = append(batch, stdlib.Record{Value: map[string]any{"id": i, "pad": big}, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: i}})
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: 12000}}}); err != nil {
		t.Fatal(err)
	}
	keys := e.keys(t, "in.")
	if len(keys) != 1 {
		t.Fatalf("objects %v, want one", keys)
	}
	info, err := e.cli.StatObject(t.Context(), e.bucket, keys[0], minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(info.ETag, "-3") {
		t.Errorf("ETag %q: want a multipart upload of 3 parts", info.ETag)
	}
	if got := e.ids(t, "in."); !reflect.DeepEqual(got, stdlibtest.Seq(1, 12001)) {
		t.Fatalf("read back %d ids, want 1..12000", len(got))
	}
}

// TestSinkPrefixPerRecord partitions by a per-record prefix: each object
// holds the records of its prefix only.
func TestSinkPrefixPerRecord(t *testing.T) {
	e := newEnv(t)
	cfg := config(t, SinkSpec, e.attrs(map[string]any{"format": stdlib.Ident("csv")}))
	cfg.Exprs = []string{"prefix"}
	s, _ := openSink(t, cfg)
	batch := recs(1, 6)
	for i := range batch {
		batch[i].Attrs = []any{fmt.Sprintf("region=%s/", []string{"eu", "us"}[i%2])}
	}
	batch[5].Attrs = []any{"/abs/"} // a record error, not a failed batch
	err := s.Write(t.Context(), batch)
	if re, ok := err.(stdlib.RecordErrors); !ok || len(re) != 1 || re[0].Index != 5 {
		t.Fatalf("Write = %v, want a record error for record 5", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"region=eu/in.p0.0000000001-0000000005.csv": "id,name\n1,n1\n3,n3\n5,n5\n",
		"region=us/in.p0.0000000002-0000000004.csv": "id,name\n2,n2\n4,n4\n",
	}
	got := map[string]string{}
	for _, k := range e.keys(t, "region=") {
		got[k] = string(e.get(t, k))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("objects %q, want %q", got, want)
	}
}

// TestParquetRoundTrip writes typed records as Parquet and reads them back
// with parquet-go: the schema follows the record type and every value
// comes back.
func TestParquetRoundTrip(t *testing.T) {
	e := newEnv(t)
	typ := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType},
		&types.Field{Name: "amount", Type: types.FloatType},
		&types.Field{Name: "vip", Type: types.BoolType},
		&types.Field{Name: "ts", Type: types.TimestampType},
		&types.Field{Name: "note", Type: types.StringType.WithOptional(true)},
		&types.Field{Name: "tags", Type: types.ListOf(types.StringType)},
		&types.Field{Name: "ship", Type: types.RecordOf(&types.Field{Name: "city", Type: types.StringType})},
	)
	cfg := config(t, SinkSpec, e.attrs(map[string]any{"format": stdlib.Ident("parquet"), "compression": stdlib.Ident("zstd")}))
	cfg.Input = typ
	s, _ := openSink(t, cfg)
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	var batch []stdlib.Record
	for i := int64(1); i <= 100; i++ {
		v := map[string]any{"id": i, "name": fmt.Sprintf("n%d", i), "amount": float64(i) / 4, "vip": i%2 == 0,
			"ts": ts.Add(time.Duration(i) * time.Second), "tags": []any{"a", fmt.Sprint(i)}, "ship": map[string]any{"city": "c"}}
		if i%3 == 0 {
			v["note"] = "three"
		}
		batch = append(batch, stdlib.Record{Value: v, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: i}})
	}
	batch = append(batch, stdlib.Record{Value: map[string]any{"id": int64(101)}, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: 101}})
	err := s.Write(t.Context(), batch)
	if re, ok := err.(stdlib.RecordErrors); !ok || len(re) != 1 || re[0].Index != 100 {
		t.Fatalf("Write = %v, want a record error for the record missing required fields", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	keys := e.keys(t, "in.")
	if len(keys) != 1 || !strings.HasSuffix(keys[0], ".parquet") {
		t.Fatalf("objects %v, want one .parquet", keys)
	}
	data := e.get(t, keys[0])
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.NumRows() != 100 {
		t.Fatalf("%d rows, want 100", f.NumRows())
	}
	r := parquet.NewGenericReader[map[string]any](bytes.NewReader(data), f.Schema())
	rows := make([]map[string]any, 100)
	for i := range rows {
		rows[i] = map[string]any{}
	}
	if n, _ := r.Read(rows); n != 100 {
		t.Fatalf("read %d rows", n)
	}
	for i, row := range rows {
		id := int64(i + 1)
		want := batch[i].Value.(map[string]any)
		if row["id"] != id || row["name"] != want["name"] || row["amount"] != want["amount"] || row["vip"] != want["vip"] {
			t.Fatalf("row %d = %v, want %v", i, row, want)
		}
		if got := row["ts"]; got != want["ts"].(time.Time).UnixMicro() {
			t.Fatalf("row %d ts = %v (%T), want %v", i, got, got, want["ts"])
		}
		if fmt.Sprint(row["tags"]) != fmt.Sprint(want["tags"]) || fmt.Sprint(row["ship"]) != "map[city:c]" {
			t.Fatalf("row %d = %v, want %v", i, row, want)
		}
		if row["note"] != want["note"] {
			t.Fatalf("row %d note = %v, want %v", i, row["note"], want["note"])
		}
	}
	for _, col := range []struct{ name, typ string }{{"ts", "TIMESTAMP"}, {"note", "optional"}, {"id", "INT(64"}} {
		if !strings.Contains(fieldLine(f.Schema().String(), col.name), col.typ) {
			t.Errorf("column %s: %q lacks %s", col.name, fieldLine(f.Schema().String(), col.name), col.typ)
		}
	}
}

func fieldLine(schema, name string) string {
	for _, l := range strings.Split(schema, "\n") {
		if strings.Contains(l, " "+name+" ") || strings.HasSuffix(strings.TrimSuffix(l, ";"), " "+name) {
			return l
		}
	}
	return ""
}
