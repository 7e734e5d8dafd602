package kafka

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/protobuf"
)

// TestSchemaFormats: a sink writing values as protobuf (or json_schema)
// by its schema and a source reading them back by the same schema get
// the records written; the payload is the plain message.
func TestSchemaFormats(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	dir := t.TempDir()
	proto := filepath.Join(dir, "ev.proto")
	if err := os.WriteFile(proto, []byte("syntax = \"proto3\";\npackage k;\nimport \"google/protobuf/timestamp.proto\";\nmessage Ev {\n  int64 id = 1;\n  string name = 2;\n  google.protobuf.Timestamp at = 3;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pt, err := protobuf.Compile(proto, "k.Ev", nil)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := jsonschema.TypeOf([]byte(`{"type": "object", "required": ["id", "name", "at"], "properties": {
	  "id": {"type": "integer", "minimum": 0}, "name": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		format string
		typ    any
	}{{"protobuf", pt}, {"json_schema", jt}} {
		t.Run(c.format, func(t *testing.T) {
			topic := uniq("protojson-" + strings.ReplaceAll(c.format, "_", "-"))
			newTopic(t, brokers, topic, 1)
			attrs := map[string]any{"topic": topic, "format": stdlib.Ident(c.format)}
			scfg := config("out", brokers, attrs)
			scfg.Schema = pt
			if c.format == "json_schema" {
				scfg.Schema = jt
			}
			var recs []stdlib.Record
			for i := range 3 {
				recs = append(recs, stdlib.Record{Value: map[string]any{"id": int64(i), "name": "n", "at": at}, Partition: -1,
					Pos: stdlib.Position{Source: "in", Partition: "p", Offset: int64(i)}})
			}
			snk := writeAll(t, scfg, recs)
			closeAll(t, snk)

			ccfg := config("in", brokers, attrs)
			ccfg.Schema = scfg.Schema
			src := openSource(t, ccfg, nil)
			defer closeAll(t, src)
			got := readN(t, src, 3)
			var ids []int64
			for _, r := range got {
				if r.Err != nil {
					t.Fatal(r.Err)
				}
				m := r.Value.(map[string]any)
				if !reflect.DeepEqual(m, map[string]any{"id": m["id"], "name": "n", "at": at}) {
					t.Errorf("record %v", m)
				}
				ids = append(ids, m["id"].(int64))
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
			if !reflect.DeepEqual(ids, []int64{0, 1, 2}) {
				t.Errorf("ids %v", ids)
			}
		})
	}
}
