package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/protobuf"
	"pipe.dev/pipe/stdlib/schemareg"
)

func protoType(t *testing.T, file, msg string) *types.Type {
	t.Helper()
	ty, err := protobuf.Compile("testdata/registry-proto/"+file, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ty.Name = "Order"
	return ty
}

func protoOrder(i int64) map[string]any {
	var note any
	if i%2 == 1 {
		note = "note"
	}
	return map[string]any{"id": i, "name": "n", "total": map[string]any{"currency": "EUR", "units": i * 100},
		"tags": []any{"a", "b"}, "status": "PAID", "note": note, "counts": map[string]any{"x": int64(1)}}
}

// A sink with register = true registers the .proto file and, first, the
// file it imports as a reference; it frames each message with the id and
// the message indexes ([1]: the second message of the file); the source
// reads the records back equal by the registry's schema.
func TestProtobufRegistryRoundTrip(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "regproto-pb")
	ty := protoType(t, "order.proto", "shop.Order")
	var recs []stdlib.Record
	for i := range int64(4) {
		recs = append(recs, stdlib.Record{Value: protoOrder(i), Partition: -1})
	}
	attrs := map[string]any{"topic": topic, "format": stdlib.Ident("protobuf"), "registry": reg.URL(), "register": true,
		"create_topic": map[string]any{"partitions": int64(1)}}
	cfg := config("out", brokers, attrs)
	cfg.Schema = ty
	writeAll(t, cfg, recs)

	ss := latestSchema(t, reg.URL(), topic+"-value")
	if ss.Type != sr.TypeProtobuf || !strings.Contains(ss.Schema.Schema, "message Order") {
		t.Errorf("registered %s %q", ss.Type, ss.Schema.Schema)
	}
	if len(ss.References) != 1 || ss.References[0].Name != "money.proto" || ss.References[0].Subject != "money.proto" {
		t.Errorf("references %+v", ss.References)
	}
	raw := fetchRaw(t, brokers, topic, 4)
	want := append(schemareg.Append(nil, ss.ID), 2, 2) // one index, 1
	if !bytes.HasPrefix(raw[0], want) {
		t.Errorf("frame % x, want prefix % x", raw[0][:min(8, len(raw[0]))], want)
	}

	src := readBack(t, brokers, attrs, ty)
	for i, r := range readN(t, src, 4) {
		if r.Err != nil {
			t.Fatalf("record %d: %v", i, r.Err)
		}
		m := r.Value.(map[string]any)
		w := protoOrder(int64(i))
		if m["id"] != w["id"] || m["status"] != "PAID" || m["note"] != w["note"] ||
			m["total"].(map[string]any)["units"] != int64(i*100) || len(m["tags"].([]any)) != 2 {
			t.Errorf("record %d: %v", i, m)
		}
	}
}

// fetchRaw reads n message values of topic as they are on the wire.
func fetchRaw(t *testing.T, brokers, topic string, n int) [][]byte {
	t.Helper()
	src := openSource(t, config("raw", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("bytes")}), nil)
	defer closeAll(t, src)
	var out [][]byte
	for _, r := range readN(t, src, n) {
		out = append(out, r.Value.(map[string]any)["value"].([]byte))
	}
	return out
}

// Messages without message indexes (as @kafkajs/confluent-schema-registry
// writes them) read as the schema's first message; a writer whose field
// changes its wire encoding, or a message of another name, is refused
// with the field or message named; a key in
// protobuf decodes by the writer's message.
func TestProtobufRegistryWriters(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "regproto-pbw")
	newTopic(t, brokers, topic, 1)
	cl := registryClient(t, reg.URL())
	create := func(subject, text string) int {
		ss, err := cl.CreateSchema(t.Context(), subject, sr.Schema{Schema: text, Type: sr.TypeProtobuf})
		if err != nil {
			t.Fatal(err)
		}
		return ss.ID
	}
	good := create(topic+"-value", "syntax = \"proto3\";\npackage shop;\nmessage Order { int64 id = 1; string name = 2; }\n")
	bad := create(topic+"-other", "syntax = \"proto3\";\npackage shop;\nmessage Order { int64 id = 1; int64 name = 2; }\n")
	key := create(topic+"-key", "syntax = \"proto3\";\nmessage K { string k = 1; }\n")
	payload := []byte{0x08, 0x07, 0x12, 0x01, 'x'} // id 7, name "x"
	plain := append(schemareg.Append(nil, good), payload...)
	indexed := append(append(schemareg.Append(nil, good), 0), payload...)
	badMsg := append(append(schemareg.Append(nil, bad), 0), 0x08, 0x01, 0x10, 0x02)
	keyMsg := append(append(schemareg.Append(nil, key), 0), 0x0a, 0x01, 'k')
	multi := create(topic+"-multi", "syntax = \"proto3\";\npackage shop;\nmessage Header { string source = 1; }\nmessage Order { int64 id = 1; string name = 2; }\n")
	second := append(append(schemareg.Append(nil, multi), 2, 2), payload...)  // indexes [1]: Order
	first := append(append(schemareg.Append(nil, multi), 0), 0x0a, 0x01, 'h') // indexes [0]: Header
	produceKV(t, brokers, topic, keyMsg, plain, indexed, badMsg, second, first)

	ty := protoType(t, "order.proto", "shop.Order")
	in := config("in", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("protobuf"), "key_format": stdlib.Ident("protobuf"), "registry": reg.URL()})
	in.Schema = ty
	src := openSource(t, in, nil)
	defer closeAll(t, src)
	got := readN(t, src, 5)
	for i, r := range []stdlib.Record{got[0], got[1], got[3]} {
		if r.Err != nil {
			t.Fatalf("record %d: %v", i, r.Err)
		}
		if m := r.Value.(map[string]any); m["id"] != int64(7) || m["name"] != "x" {
			t.Errorf("record %d: %v", i, m)
		}
		if k, _ := r.Key.(map[string]any); k["k"] != "k" {
			t.Errorf("record %d key: %v", i, r.Key)
		}
	}
	if got[2].Err == nil || !strings.Contains(got[2].Err.Error(), "field name (number 2)") {
		t.Errorf("incompatible writer: %v", got[2].Err)
	}
	if got[4].Err == nil || !strings.Contains(got[4].Err.Error(), "writes message shop.Header") {
		t.Errorf("another message: %v", got[4].Err)
	}
}

// produceKV produces values with the same key.
func produceKV(t *testing.T, brokers, topic string, key []byte, values ...[]byte) {
	t.Helper()
	var recs []stdlib.Record
	for _, v := range values {
		recs = append(recs, stdlib.Record{Key: key, Value: map[string]any{"value": v}, Partition: -1})
	}
	writeAll(t, config("raw-out", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("bytes")}), recs)
}

// JSON Schema through the registry: the sink registers the document
// (schemaType JSON) and writes the frame and JSON; the source validates
// each message against its writer's schema, and one that fails carries
// the reason as its error.
func TestJSONSchemaRegistryRoundTrip(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "regproto-js")
	doc := mustRead(t, "testdata/registry-proto/order.schema.json")
	ty, err := jsonschema.TypeOf(doc)
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]any{"topic": topic, "format": stdlib.Ident("json_schema"), "registry": reg.URL(), "register": true,
		"subject_strategy": stdlib.Ident("topic_record"), "create_topic": map[string]any{"partitions": int64(1)}}
	cfg := config("out", brokers, attrs)
	cfg.Schema = ty
	writeAll(t, cfg, []stdlib.Record{
		{Value: map[string]any{"id": int64(1), "name": "a", "note": nil}, Partition: -1},
		{Value: map[string]any{"id": int64(2), "name": "b", "note": "n"}, Partition: -1},
	})
	ss := latestSchema(t, reg.URL(), topic+"-shop.Order")
	if ss.Type != sr.TypeJSON {
		t.Fatalf("subject %s-shop.Order: %v", topic, ss.Type)
	}
	invalid := append(schemareg.Append(nil, ss.ID), `{"id":-3,"name":"c"}`...)
	produceKV(t, brokers, topic, nil, invalid)
	raw := fetchRaw(t, brokers, topic, 2)
	if id := binary.BigEndian.Uint32(raw[0][1:5]); raw[0][0] != 0 || int(id) != ss.ID || string(raw[0][5:]) != `{"id":1,"name":"a"}` {
		t.Errorf("message %q", raw[0])
	}

	src := readBack(t, brokers, attrs, ty)
	got := readN(t, src, 3)
	if got[1].Err != nil || got[1].Value.(map[string]any)["note"] != "n" {
		t.Errorf("record 1: %v %v", got[1].Value, got[1].Err)
	}
	if got[2].Err == nil || !strings.Contains(got[2].Err.Error(), "at /id") {
		t.Errorf("invalid record: %v", got[2].Err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readBack opens a source of the sink attributes attrs (without
// create_topic and register) with the declared type ty.
func readBack(t *testing.T, brokers string, attrs map[string]any, ty *types.Type) stdlib.Source {
	t.Helper()
	delete(attrs, "create_topic")
	delete(attrs, "register")
	in := config("in", brokers, attrs)
	in.Schema = ty
	src := openSource(t, in, nil)
	t.Cleanup(func() { closeAll(t, src) })
	return src
}

// Keys in protobuf and json_schema go through the key subject's latest
// schema and read back by their writer's schema; a pinned schema_id
// writes values with that id.
func TestRegistryKeysAndPinnedID(t *testing.T) {
	reg := testRegistry(t)
	brokers := testBroker(t, devbroker.Options{})
	cl := registryClient(t, reg.URL())
	create := func(subject string, s sr.Schema) int {
		ss, err := cl.CreateSchema(t.Context(), subject, s)
		if err != nil {
			t.Fatal(err)
		}
		return ss.ID
	}
	value := "syntax = \"proto3\";\npackage shop;\nmessage Order { int64 id = 1; string name = 2; }\n"
	ty := protoType(t, "order.proto", "shop.Order")
	for _, c := range []struct {
		format string
		key    sr.Schema
		want   any
	}{
		{"protobuf", sr.Schema{Schema: "syntax = \"proto3\";\nmessage K { string k = 1; int64 n = 2; }\n", Type: sr.TypeProtobuf},
			map[string]any{"k": "x", "n": int64(3)}},
		{"json_schema", sr.Schema{Schema: `{"type":"object","properties":{"k":{"type":"string"}},"required":["k"]}`, Type: sr.TypeJSON},
			map[string]any{"k": "x"}},
	} {
		t.Run(c.format, func(t *testing.T) {
			topic := uniq("regproto-keys-" + c.format)
			create(topic+"-key", c.key)
			pinned := create(uniq("regproto-pinned"), sr.Schema{Schema: value, Type: sr.TypeProtobuf})
			attrs := map[string]any{"topic": topic, "format": stdlib.Ident("protobuf"), "key_format": stdlib.Ident(c.format),
				"registry": reg.URL(), "schema_id": int64(pinned), "create_topic": map[string]any{"partitions": int64(1)}}
			cfg := config("out", brokers, attrs)
			cfg.Schema = ty
			writeAll(t, cfg, []stdlib.Record{{Key: c.want, Value: protoOrder(1), Partition: -1}})
			raw := fetchRaw(t, brokers, topic, 1)
			if !bytes.HasPrefix(raw[0], schemareg.Append(nil, pinned)) {
				t.Errorf("value % x not framed with pinned id %d", raw[0][:5], pinned)
			}
			delete(attrs, "schema_id")
			src := readBack(t, brokers, attrs, ty)
			r := readN(t, src, 1)[0]
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			got, _ := r.Key.(map[string]any)
			for k, w := range c.want.(map[string]any) {
				if g := got[k]; g != w && !(c.format == "json_schema" && fmt.Sprint(g) == fmt.Sprint(w)) {
					t.Errorf("key %s: got %#v, want %#v", k, g, w)
				}
			}
			if r.Value.(map[string]any)["id"] != int64(1) {
				t.Errorf("value %v", r.Value)
			}
		})
	}
}

// A JSON Schema writer whose $ref names another registered schema (a
// reference) validates messages with the referenced document.
func TestJSONSchemaRegistryReferences(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "regproto-jsref")
	newTopic(t, brokers, topic, 1)
	cl := registryClient(t, reg.URL())
	addr := `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`
	if _, err := cl.CreateSchema(t.Context(), "regproto-address", sr.Schema{Schema: addr, Type: sr.TypeJSON}); err != nil {
		t.Fatal(err)
	}
	main := `{"type":"object","properties":{"id":{"type":"integer"},"home":{"$ref":"address.json"}},"required":["id","home"]}`
	ss, err := cl.CreateSchema(t.Context(), topic+"-value", sr.Schema{Schema: main, Type: sr.TypeJSON,
		References: []sr.SchemaReference{{Name: "address.json", Subject: "regproto-address", Version: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	frame := func(s string) []byte { return append(schemareg.Append(nil, ss.ID), s...) }
	produceKV(t, brokers, topic, nil, frame(`{"id":1,"home":{"city":"Utrecht"}}`), frame(`{"id":2,"home":{"town":"x"}}`))
	ty, err := jsonschema.TypeOf([]byte(`{"type":"object","properties":{"id":{"type":"integer"},"home":{"type":"object"}},"required":["id","home"]}`))
	if err != nil {
		t.Fatal(err)
	}
	src := readBack(t, brokers, map[string]any{"topic": topic, "format": stdlib.Ident("json_schema"), "registry": reg.URL()}, ty)
	got := readN(t, src, 2)
	if got[0].Err != nil || got[0].Value.(map[string]any)["home"].(map[string]any)["city"] != "Utrecht" {
		t.Errorf("record 0: %v %v", got[0].Value, got[0].Err)
	}
	if got[1].Err == nil || !strings.Contains(got[1].Err.Error(), "city") {
		t.Errorf("record 1 (no city): %v", got[1].Err)
	}
}
