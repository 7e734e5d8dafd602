package kafka

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
)

const (
	// resolveV1 is what older producers wrote.
	resolveV1 = `{"type":"record","name":"Item","namespace":"shop","fields":[
	  {"name":"id","type":"int"},
	  {"name":"qty","type":"int"},
	  {"name":"label","type":"string"},
	  {"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","PAID","LOST"]}},
	  {"name":"legacy","type":"string"},
	  {"name":"extra","type":["null","string","long"]}]}`
	// resolveV2 is the declared (reader) schema: id and qty promoted,
	// label read as bytes, state's LOST unknown (its default reads),
	// legacy removed, region added with a default, extra's long read
	// as a double.
	resolveV2 = `{"type":"record","name":"Item","namespace":"shop","fields":[
	  {"name":"id","type":"long"},
	  {"name":"qty","type":"double"},
	  {"name":"label","type":"bytes"},
	  {"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","PAID","OTHER"],"default":"OTHER"}},
	  {"name":"region","type":"string","default":"eu"},
	  {"name":"extra","type":["null","string","double"],"default":null}]}`
	// resolveNoDefault adds a field without a default: it cannot read v1.
	resolveNoDefault = `{"type":"record","name":"Item","namespace":"shop","fields":[
	  {"name":"id","type":"long"},
	  {"name":"region","type":"string"}]}`
)

// declaredFile returns the record type of an .avsc file with text, as
// `schema X from "file.avsc"` declares it; refs are the files beside it,
// by name.
func declaredFile(t *testing.T, text string, refs ...string) *types.Type {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "item.avsc")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(refs); i += 2 {
		if err := os.WriteFile(filepath.Join(dir, refs[i]), []byte(refs[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ty, err := avro.LoadFile(path, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	ty.Name = "Item"
	return ty
}

// With the source's schema read from an .avsc file, each writer schema
// is resolved against that Avro schema: records of two versions read as
// one type, added fields take the reader's defaults, removed ones are
// dropped, numbers promote, an unknown enum symbol reads as the enum's
// default, a union branch as the reader's branch that reads it; a writer
// schema the declared one cannot read is a record error naming the field.
func TestAvroReaderResolution(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "regcompat-resolve")
	id1 := register(t, reg.URL(), topic+"-value", resolveV1)
	id2 := register(t, reg.URL(), topic+"-value", resolveV2)
	id3 := register(t, reg.URL(), "regcompat-other-value", resolveNoDefault)
	newTopic(t, brokers, topic, 1)
	produce(t, brokers, topic,
		frame(t, id1, resolveV1, map[string]any{"id": int64(1), "qty": int64(3), "label": "a", "state": "LOST", "legacy": "x", "extra": int64(7)}),
		frame(t, id2, resolveV2, map[string]any{"id": int64(2), "qty": 2.5, "label": []byte("b"), "state": "PAID", "region": "us", "extra": "s"}),
		frame(t, id1, resolveV1, map[string]any{"id": int64(3), "qty": int64(1), "label": "c", "state": "NEW", "legacy": "y", "extra": nil}),
		frame(t, id3, resolveNoDefault, map[string]any{"id": int64(4), "region": "ap"}),
	)
	cfg := config("in", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "registry": reg.URL()})
	cfg.Schema = declaredFile(t, resolveV2)
	src := openSource(t, cfg, nil)
	defer closeAll(t, src)
	got := readN(t, src, 4)
	for i, want := range []map[string]any{
		{"id": int64(1), "qty": 3.0, "label": "a", "state": "OTHER", "region": "eu", "extra": 7.0},
		{"id": int64(2), "qty": 2.5, "label": "b", "state": "PAID", "region": "us", "extra": "s"},
		{"id": int64(3), "qty": 1.0, "label": "c", "state": "NEW", "region": "eu", "extra": nil},
	} {
		if got[i].Err != nil {
			t.Fatalf("record %d: %v", i, got[i].Err)
		}
		m := got[i].Value.(map[string]any)
		b, ok := m["label"].([]byte)
		if !ok {
			t.Fatalf("record %d: label is %T, want bytes", i, m["label"])
		}
		m = clone(m)
		m["label"] = string(b)
		if d := diffValues(m, want); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
	}
	// The declared schema's own writer decodes directly; an older one
	// through the resolution.
	dec := src.(*source).val.(*avroDecoder)
	if w, err := dec.writer(id2); err != nil || w.res != nil {
		t.Errorf("writer of the declared schema: %+v, %v; want it decoded without a resolver", w, err)
	}
	if w, err := dec.writer(id1); err != nil || w.res == nil {
		t.Errorf("writer of an older version: %+v, %v; want it resolved", w, err)
	}
	// resolveNoDefault lacks qty, label, state (no default in the
	// reader's schema).
	if err := got[3].Err; err == nil || !strings.Contains(err.Error(), "field qty") {
		t.Errorf("unresolvable writer: err %v, want one naming field qty", err)
	}
}

// A sink with register = true whose schema was read from an .avsc that
// uses a type of another file registers that file first, under the type's
// full name, and its own schema with a reference to it; the source reads
// the records back through the registry's references.
func TestAvroSinkRegistersReferences(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "regcompat-refs")
	const (
		order = `{"type":"record","name":"Order","namespace":"regcompat","fields":[
		  {"name":"id","type":"long"},{"name":"ship_to","type":"regcompat.Address"}]}`
		address = `{"type":"record","name":"Address","namespace":"regcompat","fields":[{"name":"city","type":"string"}]}`
	)
	ty := declaredFile(t, order, "regcompat.Address.avsc", address)
	cfg := config("out", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "registry": reg.URL(), "register": true,
		"create_topic": map[string]any{"partitions": int64(1)}})
	cfg.Schema = ty
	writeAll(t, cfg, []stdlib.Record{{Value: map[string]any{"id": int64(1), "ship_to": map[string]any{"city": "Lyon"}}, Partition: -1}})

	ss := latestSchema(t, reg.URL(), topic+"-value")
	if len(ss.References) != 1 || ss.References[0].Name != "regcompat.Address" || ss.References[0].Subject != "regcompat.Address" {
		t.Errorf("references registered: %+v", ss.References)
	}
	if strings.Contains(ss.Schema.Schema, `"city"`) {
		t.Errorf("the referencing schema inlines its reference: %s", ss.Schema.Schema)
	}
	scfg := config("in", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "registry": reg.URL()})
	scfg.Schema = ty
	src := openSource(t, scfg, nil)
	defer closeAll(t, src)
	got := readN(t, src, 1)
	if got[0].Err != nil {
		t.Fatal(got[0].Err)
	}
	m := got[0].Value.(map[string]any)
	if m["id"] != int64(1) || m["ship_to"].(map[string]any)["city"] != "Lyon" {
		t.Errorf("read back %v", m)
	}
}

// dbzEnvelope is the value schema Debezium's AvroConverter registers for
// a PostgreSQL table (connect.* attributes and all).
const dbzEnvelope = `{"type":"record","name":"Envelope","namespace":"dbserver1.inventory.customers","fields":[
  {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
    {"name":"id","type":"int"},
    {"name":"first_name","type":"string"},
    {"name":"email","type":["null","string"],"default":null}],
    "connect.name":"dbserver1.inventory.customers.Value"}],"default":null},
  {"name":"after","type":["null","Value"],"default":null},
  {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql","fields":[
    {"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},
    {"name":"ts_ms","type":"long"},
    {"name":"snapshot","type":[{"type":"string","connect.version":1,"connect.parameters":{"allowed":"true,last,false,incremental"},"connect.default":"false","connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},
    {"name":"db","type":"string"},{"name":"sequence","type":["null","string"],"default":null},
    {"name":"schema","type":"string"},{"name":"table","type":"string"},
    {"name":"txId","type":["null","long"],"default":null},{"name":"lsn","type":["null","long"],"default":null},
    {"name":"xmin","type":["null","long"],"default":null}],"connect.name":"io.debezium.connector.postgresql.Source"}},
  {"name":"op","type":"string"},
  {"name":"ts_ms","type":["null","long"],"default":null},
  {"name":"transaction","type":["null",{"type":"record","name":"block","namespace":"event","fields":[
    {"name":"id","type":"string"},{"name":"total_order","type":"long"},{"name":"data_collection_order","type":"long"}],
    "connect.version":1,"connect.name":"event.block"}],"default":null}],
  "connect.version":1,"connect.name":"dbserver1.inventory.customers.Envelope"}`

// format = debezium_avro reads the envelopes Debezium's AvroConverter
// writes as their rows, with the operation in __op: the row after an
// insert or update, before it for a delete; a truncate is a record error.
func TestDebeziumAvroReadsDebeziumEvents(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "regcompat-dbz")
	id := register(t, reg.URL(), topic+"-value", dbzEnvelope)
	newTopic(t, brokers, topic, 1)
	src := map[string]any{"version": "2.7.0.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": int64(1700000000000),
		"snapshot": "false", "db": "inventory", "schema": "inventory", "table": "customers", "txId": int64(7), "lsn": int64(99)}
	ev := func(op string, before, after map[string]any) string {
		var b, a any
		if before != nil {
			b = before
		}
		if after != nil {
			a = after
		}
		return frame(t, id, dbzEnvelope, map[string]any{"before": b, "after": a, "source": src, "op": op, "ts_ms": int64(1700000000001)})
	}
	anne := map[string]any{"id": int64(1001), "first_name": "Anne", "email": "a@example.com"}
	anne2 := map[string]any{"id": int64(1001), "first_name": "Anne Marie", "email": nil}
	produce(t, brokers, topic, ev("r", nil, anne), ev("u", anne, anne2), ev("d", anne2, nil), ev("t", nil, nil))

	row := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "first_name", Type: types.StringType},
		&types.Field{Name: "email", Type: types.StringType.WithOptional(true)})
	cfg := config("in", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("debezium_avro"), "registry": reg.URL()})
	cfg.Schema = row
	s := openSource(t, cfg, nil)
	defer closeAll(t, s)
	got := readN(t, s, 4)
	for i, want := range []map[string]any{
		{"id": int64(1001), "first_name": "Anne", "email": "a@example.com", "__op": "read"},
		{"id": int64(1001), "first_name": "Anne Marie", "email": nil, "__op": "update"},
		{"id": int64(1001), "first_name": "Anne Marie", "email": nil, "__op": "delete"},
	} {
		if got[i].Err != nil {
			t.Fatalf("record %d: %v", i, got[i].Err)
		}
		if d := diffValues(got[i].Value.(map[string]any), want); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
	}
	if err := got[3].Err; err == nil || !strings.Contains(err.Error(), "truncate") {
		t.Errorf("truncate: err %v", err)
	}
}
