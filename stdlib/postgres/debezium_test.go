package postgres

import (
	"reflect"
	"strings"
	"testing"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// TestCDCDebeziumReplica captures changes of a table, writes them as
// Debezium envelopes, reads the envelopes back as rows with their
// operation in __op and upserts and deletes them into another table: the
// replica then equals the table.
func TestCDCDebeziumReplica(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("src") + " (id bigint PRIMARY KEY, name text, n bigint)")
	c.exec("CREATE TABLE " + c.table("dst") + " (id bigint PRIMARY KEY, name text, n bigint)")
	s := c.mustOpen(t, nil, "src")
	c.exec("INSERT INTO " + c.table("src") + " SELECT g, 'v' || g, g FROM generate_series(1, 20) g")
	c.exec("UPDATE " + c.table("src") + " SET name = 'u', n = n * 10 WHERE id % 3 = 0")
	c.exec("DELETE FROM " + c.table("src") + " WHERE id % 4 = 0")
	c.exec("INSERT INTO " + c.table("src") + " VALUES (4, 'again', 44)")
	recs := readCDC(t, s, 20+6+5+1)

	enc, err := codec.New("debezium", nil, codec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	row := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType.WithOptional(true)},
		&types.Field{Name: "n", Type: types.IntType.WithOptional(true)},
	)
	dec, err := codec.New("debezium", row, codec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []stdlib.Record
	ops := map[string]int{}
	for _, r := range recs {
		msg, err := enc.Append(nil, r.Value.(map[string]any))
		if err != nil {
			t.Fatal(err)
		}
		v, err := dec.Decode(msg)
		if err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		ops[v[codec.DebeziumOp].(string)]++
		rows = append(rows, stdlib.Record{Key: r.Key, Value: v, Pos: r.Pos})
	}
	if want := map[string]int{"insert": 21, "update": 6, "delete": 5}; !reflect.DeepEqual(ops, want) {
		t.Errorf("operations %v, want %v", ops, want)
	}
	snk, _ := c.openSink(c.sinkConfig(map[string]any{"table": c.table("dst"), "mode": stdlib.Ident("upsert")}, row, stdlib.AtLeastOnce))
	if err := snk.Write(t.Context(), rows); err != nil {
		t.Fatal(err)
	}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	got := c.rows("SELECT * FROM " + c.table("dst") + " ORDER BY id")
	want := c.rows("SELECT * FROM " + c.table("src") + " ORDER BY id")
	if len(want) != 16 || !reflect.DeepEqual(got, want) {
		t.Fatalf("replica:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
