package core

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamba/avro/v2/ocf"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
)

// TestFileSourceAvro: format = avro reads an object container file
// written by hamba/avro's own encoder (deflate, blocks of 3 records),
// resolved against the declared schema; resumed from the position of any
// record, it reads exactly the records after it, mid-block ones included;
// a block cut short is a record error.
func TestFileSourceAvro(t *testing.T) {
	const writer = `{"type": "record", "name": "R", "fields": [
	  {"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}`
	const reader = `{"type": "record", "name": "R", "fields": [
	  {"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": null}]}`
	dir := t.TempDir()
	p := filepath.Join(dir, "in.avro")
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(writer, &buf, ocf.WithCodec(ocf.Deflate), ocf.WithBlockLength(3))
	must(t, err)
	const n = 10
	for i := range n {
		must(t, enc.Encode(map[string]any{"id": int64(i), "name": "n"}))
	}
	must(t, enc.Close())
	must(t, os.WriteFile(p, buf.Bytes(), 0o644))
	rs, err := avro.ParseSchema([]byte(reader))
	must(t, err)
	typ, err := avro.TypeOf(rs)
	must(t, err)
	newSrc := func() stdlib.Source {
		cfg := config(FileSourceSpec, "in", map[string]any{"path": p, "format": stdlib.Ident("avro"), "batch": int64(2)})
		cfg.Schema = typ
		src, err := FileSourceSpec.NewSource(cfg)
		must(t, err)
		return src
	}
	all := drain(t, newSrc(), nil)
	ids := func(recs []stdlib.Record) []int64 {
		var out []int64
		for _, r := range recs {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			m := r.Value.(map[string]any)
			if len(m) != 2 || m["note"] != nil {
				t.Fatalf("record %v", m)
			}
			out = append(out, m["id"].(int64))
		}
		return out
	}
	got := ids(all)
	if len(got) != n {
		t.Fatalf("read %v", got)
	}
	for i, id := range got {
		if id != int64(i) {
			t.Fatalf("read %v", got)
		}
	}
	for k := range n {
		res := checkpoint(&stored{}, all[:k+1])
		rest := ids(drain(t, newSrc(), res))
		if len(rest) != n-k-1 || (len(rest) > 0 && rest[0] != int64(k+1)) {
			t.Errorf("resumed after record %d (offset %d): read %v", k, all[k].Pos.Offset, rest)
		}
	}
	// The last block cut short.
	must(t, os.WriteFile(p, buf.Bytes()[:buf.Len()-5], 0o644))
	cut := drain(t, newSrc(), nil)
	if len(cut) != 10 || cut[9].Err == nil || !strings.Contains(cut[9].Err.Error(), "an Avro block is cut short") {
		t.Errorf("cut file: %d records, last %v", len(cut), cut[len(cut)-1])
	}
}
