package postgres

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/kafka"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/schemareg/devreg"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// kafkaConfig is the Config of a one-task kafka stage of spec, with the
// spec's defaults.
func kafkaConfig(t *testing.T, spec *stdlib.Spec, stage string, attrs map[string]any, schema *types.Type) stdlib.Config {
	t.Helper()
	a, err := spec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	if errs := spec.Check(a); len(errs) > 0 {
		t.Fatalf("%s: %v", stage, errs)
	}
	return stdlib.Config{Pipeline: "regcompat", Stage: stage, Attrs: a, Tasks: 1, Delivery: stdlib.AtLeastOnce, Schema: schema}
}

// TestCDCDebeziumAvroReplica captures changes of a table, writes them to
// the dev broker as Debezium envelopes in Avro (format debezium_avro,
// the envelope schema registered in the dev registry), reads the topic
// back as rows with their operation in __op and upserts and deletes them
// into another table: the replica then equals the table.
func TestCDCDebeziumAvroReplica(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("src") + " (id bigint PRIMARY KEY, name text, n bigint NOT NULL, at timestamptz)")
	c.exec("CREATE TABLE " + c.table("dst") + " (id bigint PRIMARY KEY, name text, n bigint NOT NULL, at timestamptz)")
	row := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType.WithOptional(true)},
		&types.Field{Name: "n", Type: types.IntType},
		&types.Field{Name: "at", Type: types.TimestampType.WithOptional(true)},
	)
	row.Name = "Row"
	s, err := c.open(t, map[string]any{"tables": []any{c.table("src")}, "schema": row}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.exec("INSERT INTO " + c.table("src") + " SELECT g, 'v' || g, g, '2026-01-02T03:04:05.123456Z'::timestamptz + g * interval '1 hour' FROM generate_series(1, 20) g")
	c.exec("UPDATE " + c.table("src") + " SET name = NULL, n = n * 10 WHERE id % 3 = 0")
	c.exec("DELETE FROM " + c.table("src") + " WHERE id % 4 = 0")
	c.exec("INSERT INTO " + c.table("src") + " VALUES (4, 'again', 44, NULL)")
	const n = 20 + 6 + 5 + 1
	recs := readCDC(t, s, n)

	b, err := devbroker.Start(t.Context(), devbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	reg, err := devreg.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	topic := "regcompat.public.src"
	out := kafkaConfig(t, kafka.SinkSpec, "out", map[string]any{"brokers": []any{b.Addr()}, "topic": topic,
		"format": stdlib.Ident("debezium_avro"), "registry": reg.URL(), "register": true,
		"create_topic": map[string]any{"partitions": int64(1)}}, cdcOutputOf(row))
	snk, err := kafka.SinkSpec.NewSink(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snk.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer snk.Close(t.Context())
	if err := snk.Write(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}

	withOp := types.RecordOf(append(append([]*types.Field{}, row.Fields...), &types.Field{Name: codec.DebeziumOp, Type: types.StringType.WithOptional(true)})...)
	in := kafkaConfig(t, kafka.SourceSpec, "in", map[string]any{"brokers": []any{b.Addr()}, "topic": topic, "group": "regcompat-dbz",
		"format": stdlib.Ident("debezium_avro"), "registry": reg.URL(), "key_format": stdlib.Ident("json"), "start": stdlib.Ident("earliest")}, withOp)
	src, err := kafka.SourceSpec.NewSource(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close(t.Context())
	got := stdlibtest.ReadN(t, src, n, 30*time.Second)
	ops := map[string]int{}
	for i, r := range got {
		if r.Err != nil {
			t.Fatalf("record %d: %v", i, r.Err)
		}
		v := r.Value.(map[string]any)
		ops[v[codec.DebeziumOp].(string)]++
		if k, ok := r.Key.(map[string]any); !ok || k["id"] != v["id"] {
			t.Errorf("record %d: key %v, row %v", i, r.Key, v)
		}
	}
	if want := map[string]int{"insert": 21, "update": 6, "delete": 5}; !reflect.DeepEqual(ops, want) {
		t.Errorf("operations %v, want %v", ops, want)
	}
	pg, _ := c.openSink(c.sinkConfig(map[string]any{"table": c.table("dst"), "mode": stdlib.Ident("upsert")}, withOp, stdlib.AtLeastOnce))
	if err := pg.Write(t.Context(), got); err != nil {
		t.Fatal(err)
	}
	if err := pg.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	gotRows := c.rows("SELECT * FROM " + c.table("dst") + " ORDER BY id")
	want := c.rows("SELECT * FROM " + c.table("src") + " ORDER BY id")
	if len(want) != 16 || !reflect.DeepEqual(gotRows, want) {
		t.Fatalf("replica:\n%s\nwant:\n%s", strings.Join(gotRows, "\n"), strings.Join(want, "\n"))
	}
}
