package kafka

import (
	"fmt"
	"strings"
	"testing"
	"time"

	havro "github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/schemareg"
	"pipe.dev/pipe/stdlib/schemareg/devreg"
)

const (
	avroV1 = `{"type":"record","name":"Order","namespace":"registry","fields":[
	  {"name":"id","type":"long"},
	  {"name":"name","type":"string"},
	  {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
	  {"name":"day","type":{"type":"int","logicalType":"date"}},
	  {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
	  {"name":"at_us","type":{"type":"long","logicalType":"timestamp-micros"}},
	  {"name":"tod","type":{"type":"int","logicalType":"time-millis"}},
	  {"name":"uid","type":{"type":"string","logicalType":"uuid"}}]}`
	// avroBad turns name into a long: not compatible.
	avroBad = `{"type":"record","name":"Order","namespace":"registry","fields":[
	  {"name":"id","type":"long"},
	  {"name":"name","type":"long"}]}`
)

// avroV2 adds an optional field to avroV1: BACKWARD compatible with it.
var avroV2 = strings.Replace(avroV1, `"logicalType":"uuid"}}]}`,
	`"logicalType":"uuid"}},
	  {"name":"email","type":["null","string"],"default":null}]}`, 1)

func testRegistry(t *testing.T) *devreg.Registry {
	t.Helper()
	r, err := devreg.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func register(t *testing.T, url, subject, text string) int {
	t.Helper()
	cl := registryClient(t, url)
	ss, err := cl.CreateSchema(t.Context(), subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("register %s: %v", subject, err)
	}
	return ss.ID
}

// registryTopic starts a schema registry and a broker for a test and
// names a topic (not created) after prefix.
func registryTopic(t *testing.T, prefix string) (reg *devreg.Registry, brokers, topic string) {
	t.Helper()
	return testRegistry(t), testBroker(t, devbroker.Options{}), uniq(prefix)
}

// registryClient is a client of the schema registry at url.
func registryClient(t *testing.T, url string) *sr.Client {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// latestSchema is the latest version registered under subject.
func latestSchema(t *testing.T, url, subject string) sr.SubjectSchema {
	t.Helper()
	ss, err := registryClient(t, url).SchemaByVersion(t.Context(), subject, -1)
	if err != nil {
		t.Fatalf("subject %s: %v", subject, err)
	}
	return ss
}

// frame encodes v with schema text in the wire format of id.
func frame(t *testing.T, id int, text string, v map[string]any) string {
	t.Helper()
	s, err := havro.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	b, err := avro.NewEncoder(s).Append(schemareg.Append(nil, id), v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func order(i int64) map[string]any {
	return map[string]any{
		"id": i, "name": "n" + string(rune('a'+i)), "amount": "-12.34",
		"day":   time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"at":    time.Date(2024, 2, 29, 13, 14, 15, 678e6, time.UTC),
		"at_us": time.Date(2024, 2, 29, 13, 14, 15, 678901e3, time.UTC),
		"tod":   int64(47655678), "uid": "6f1c9a52-3f6e-4c59-9b8e-3c0c39b1e0a1",
	}
}

func declared(t *testing.T, text string) *types.Type {
	t.Helper()
	s, err := avro.ParseSchema([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	ty, err := avro.TypeOf(s)
	if err != nil {
		t.Fatal(err)
	}
	ty.Name = "Order"
	return ty
}

// A topic holding records of two compatible schema versions reads as the
// one declared type; a record of an unknown id carries its error.
func TestAvroTwoVersionsReadAsOneType(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "registry-orders")
	id1 := register(t, reg.URL(), topic+"-value", avroV1)
	id2 := register(t, reg.URL(), topic+"-value", avroV2)
	if id1 == id2 {
		t.Fatalf("two versions got one id %d", id1)
	}
	newTopic(t, brokers, topic, 1)
	v2 := order(1)
	v2["email"] = "x@example.com"
	produce(t, brokers, topic, frame(t, id1, avroV1, order(0)), frame(t, id2, avroV2, v2), "\x00\x00\x00\x03\xe7garbage")

	cfg := config("in", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "registry": reg.URL()})
	cfg.Schema = declared(t, avroV2)
	src := openSource(t, cfg, nil)
	defer closeAll(t, src)
	got := readN(t, src, 3)
	for i, want := range []map[string]any{order(0), v2} {
		if got[i].Err != nil {
			t.Fatalf("record %d: %v", i, got[i].Err)
		}
		m := got[i].Value.(map[string]any)
		if _, ok := m["email"]; !ok {
			t.Errorf("record %d has no email field: %v", i, m)
		}
		want = clone(want)
		if _, ok := want["email"]; !ok {
			want["email"] = nil
		}
		if d := diffValues(m, want); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
	}
	if got[2].Err == nil || !strings.Contains(got[2].Err.Error(), "schema id 999 is not in the registry") {
		t.Errorf("unknown id: err %v", got[2].Err)
	}
}

func clone(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func diffValues(got, want map[string]any) string {
	var d []string
	for k, w := range want {
		g := got[k]
		if gt, ok := g.(time.Time); ok {
			if wt, ok := w.(time.Time); !ok || !gt.Equal(wt) {
				d = append(d, k+": got "+gt.String())
			}
			continue
		}
		if g != w {
			d = append(d, k+": got "+fmt.Sprintf("%#v, want %#v", g, w))
		}
	}
	if len(got) != len(want) {
		d = append(d, "field count differs")
	}
	return strings.Join(d, "; ")
}

// An incompatible registration is refused with the field named: by the
// registry, by the client's own check, and by a sink with register = true.
func TestAvroIncompatibleRegistrationRefused(t *testing.T) {
	reg := testRegistry(t)
	topic := uniq("registry-refuse")
	register(t, reg.URL(), topic+"-value", avroV1)

	cl := registryClient(t, reg.URL())
	_, err := cl.CreateSchema(t.Context(), topic+"-value", sr.Schema{Schema: avroBad, Type: sr.TypeAvro})
	if err == nil || !strings.Contains(err.Error(), "field name") {
		t.Errorf("registry accepted or did not name the field: %v", err)
	}
	c, err := schemareg.New(schemareg.Options{URL: reg.URL()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(t.Context(), topic+"-value", avroBad); err == nil || !strings.Contains(err.Error(), "field name") {
		t.Errorf("client check: %v", err)
	}

	brokers := testBroker(t, devbroker.Options{})
	cfg := config("out", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "registry": reg.URL(), "register": true})
	cfg.Schema = types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "name", Type: types.IntType})
	cfg.Schema.Name = "registry.Order"
	snk, err := SinkSpec.NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, snk)
	if _, err := snk.Open(t.Context()); err == nil || !strings.Contains(err.Error(), "field name") {
		t.Errorf("sink register: %v", err)
	}
	vs, err := cl.SubjectVersions(t.Context(), topic+"-value")
	if err != nil || len(vs) != 1 {
		t.Errorf("versions after refusals: %v %v", vs, err)
	}
}

// The sink writes with the subject's latest schema; the source reads the
// records back equal, logical types included.
func TestAvroSinkSourceRoundTrip(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "registry-rt")
	register(t, reg.URL(), topic+"-value", avroV2)
	register(t, reg.URL(), topic+"-key", `"long"`)
	var recs []stdlib.Record
	for i := range int64(5) {
		recs = append(recs, stdlib.Record{Key: i, Value: order(i), Partition: -1})
	}
	attrs := map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "key_format": stdlib.Ident("avro"), "registry": reg.URL(),
		"create_topic": map[string]any{"partitions": int64(1)}}
	writeAll(t, config("out", brokers, attrs), recs)

	delete(attrs, "create_topic")
	cfg := config("in", brokers, attrs)
	cfg.Schema = declared(t, avroV2)
	src := openSource(t, cfg, nil)
	defer closeAll(t, src)
	got := readN(t, src, 5)
	for i, r := range got {
		if r.Err != nil {
			t.Fatalf("record %d: %v", i, r.Err)
		}
		want := order(int64(i))
		want["email"] = nil
		if d := diffValues(r.Value.(map[string]any), want); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
		if r.Key != int64(i) {
			t.Errorf("record %d: key %v", i, r.Key)
		}
	}
}

// The registry attributes are checked before anything runs.
func TestAvroAttributesChecked(t *testing.T) {
	for _, c := range []struct {
		spec  *stdlib.Spec
		attrs map[string]any
		want  string
	}{
		{SourceSpec, map[string]any{"format": stdlib.Ident("avro")}, "needs registry"},
		{SourceSpec, map[string]any{"key_format": stdlib.Ident("avro")}, "needs registry"},
		{SinkSpec, map[string]any{"registry": "http://r"}, "registry applies to the formats avro, protobuf and json_schema through a registry"},
		{SinkSpec, map[string]any{"format": stdlib.Ident("json"), "register": true}, "register applies to the formats avro, protobuf and json_schema through a registry"},
		{SinkSpec, map[string]any{"format": stdlib.Ident("avro"), "registry": "http://r", "register": true, "schema_id": int64(3)}, "not both"},
		{SinkSpec, map[string]any{"format": stdlib.Ident("avro"), "registry": "http://r", "registry_auth": map[string]any{"username": "u"}}, "both username and password"},
		{SinkSpec, map[string]any{"format": stdlib.Ident("avro"), "registry": "http://r", "registry_auth": map[string]any{"token": "t", "password": "p", "username": "u"}}, "token or username"},
	} {
		attrs := map[string]any{"brokers": []any{"x:1"}, "topic": "t"}
		for k, v := range c.attrs {
			attrs[k] = v
		}
		var msgs []string
		for _, e := range c.spec.Check(attrs) {
			msgs = append(msgs, e.Attr+": "+e.Message)
		}
		if !strings.Contains(strings.Join(msgs, "; "), c.want) {
			t.Errorf("%v: got %v, want %q", c.attrs, msgs, c.want)
		}
	}
	ok := map[string]any{"brokers": []any{"x:1"}, "topic": "t", "format": stdlib.Ident("avro"), "registry": "http://r", "register": false}
	if errs := SinkSpec.Check(ok); len(errs) != 0 {
		t.Errorf("valid attributes refused: %v", errs)
	}
}

// register = true registers the sink's record type (once) and writes with
// it; the source reads the records back.
func TestAvroSinkRegisters(t *testing.T) {
	reg, brokers, topic := registryTopic(t, "registry-reg")
	ty := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "at", Type: types.TimestampType},
		&types.Field{Name: "note", Type: types.StringType.WithOptional(true)})
	ty.Name = "Reg"
	cfg := config("out", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "registry": reg.URL(), "register": true,
		"create_topic": map[string]any{"partitions": int64(1)}})
	cfg.Schema = ty
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456e3, time.UTC)
	writeAll(t, cfg, []stdlib.Record{{Value: map[string]any{"id": int64(1), "at": at, "note": "x"}, Partition: -1},
		{Value: map[string]any{"id": int64(2), "at": at}, Partition: -1}})
	ss := latestSchema(t, reg.URL(), topic+"-value")
	if ss.Version != 1 || !strings.Contains(ss.Schema.Schema, "timestamp-micros") {
		t.Fatalf("registered: %+v", ss)
	}
	scfg := config("in", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("avro"), "registry": reg.URL()})
	scfg.Schema = ty
	src := openSource(t, scfg, nil)
	defer closeAll(t, src)
	got := readN(t, src, 2)
	for i, want := range []map[string]any{{"id": int64(1), "at": at, "note": "x"}, {"id": int64(2), "at": at, "note": nil}} {
		if got[i].Err != nil {
			t.Fatal(got[i].Err)
		}
		if d := diffValues(got[i].Value.(map[string]any), want); d != "" {
			t.Errorf("record %d: %s", i, d)
		}
	}
}
