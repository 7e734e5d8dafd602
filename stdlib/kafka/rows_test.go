package kafka

import (
	"reflect"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestSourceRows reads the same JSON messages with a source that decodes
// into rows (Config.Rows, as under the executor) and with one that
// decodes into maps: the values (as maps) and the record errors agree,
// with a schema and without.
func TestSourceRows(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("krow-rows")
	newTopic(t, brokers, topic, 1)
	msgs := []string{
		`{"id":1,"user":"u1","amount":79.5,"ts":"2024-01-01T00:00:01Z","tags":["a"]}`,
		`{"id":2,"user":"u2","amount":12,"ts":"2024-01-01T00:00:02Z","tags":[]}`,
		`{"id":3,"user":"u3","amount":1.5,"ts":"2024-01-01T00:00:03Z","tags":null,"extra":true}`,
		`{"user":"u4","id":4,"amount":2,"ts":"2024-01-01T00:00:04Z"}`,
		`{"id":5.0,"user":"u5","amount":3,"ts":"2024-01-01T00:00:05Z"}`,
		`{"id":6,"id":7,"user":"u6","amount":3,"ts":"2024-01-01T00:00:06Z"}`,
		`{"id":8,"user":null,"amount":3,"ts":"2024-01-01T00:00:08Z"}`,
		`{"id":9,"amount":3,"ts":"2024-01-01T00:00:09Z"}`,
		`{"id":"10","user":"u10","amount":3,"ts":"2024-01-01T00:00:10Z"}`,
		`{"id":11,"user":"u11","amount":3,"ts":"yesterday"}`,
		`{"id":12,"user":"u12","amount":3,"ts":"2024-01-01T00:00:12Z","tags":[1]}`,
		`{"id":13,"user":"u13"`,
		`[1,2]`,
		``,
		`{"id":14.5,"user":"u14","amount":3,"ts":"2024-01-01T00:00:14Z"}`,
		`{"id":15,"user":"u15","amount":4.25,"ts":"2024-01-01T00:00:15Z","tags":["x","y"]}`,
	}
	produce(t, brokers, topic, msgs...)
	schema := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "user", Type: types.StringType},
		&types.Field{Name: "amount", Type: types.FloatType},
		&types.Field{Name: "ts", Type: types.TimestampType},
		&types.Field{Name: "tags", Type: types.ListOf(types.StringType).WithOptional(true)},
	)
	for _, typed := range []bool{false, true} {
		read := func(rows bool) []stdlib.Record {
			cfg := config("in", brokers, map[string]any{"topic": topic})
			if typed {
				cfg.Schema = schema
			}
			cfg.Rows = rows
			src := openSource(t, cfg, nil)
			defer closeAll(t, src)
			return readN(t, src, len(msgs))
		}
		maps, rows := read(false), read(true)
		nrows, nerrs := 0, 0
		for i := range msgs {
			m, r := maps[i], rows[i]
			if (m.Err == nil) != (r.Err == nil) || m.Err != nil && m.Err.Error() != r.Err.Error() {
				t.Errorf("typed %v, %s: error %v with rows, %v with maps", typed, msgs[i], r.Err, m.Err)
				continue
			}
			if m.Err != nil {
				nerrs++
				continue
			}
			if _, ok := r.Value.(*stdlib.Row); ok {
				nrows++
			}
			if got := stdlib.Materialize(r.Value); !reflect.DeepEqual(got, m.Value) {
				t.Errorf("typed %v, %s: value %#v with rows, %#v with maps", typed, msgs[i], got, m.Value)
			}
		}
		// Without a schema only the messages that are no JSON object
		// fail; with one, so do the mismatches. Every value but the one
		// naming a field twice is a row.
		wantErrs := 3
		if typed {
			wantErrs = 9
		}
		if nerrs != wantErrs || nrows != len(msgs)-nerrs-1 {
			t.Errorf("typed %v: %d errors and %d rows, want %d and %d", typed, nerrs, nrows, wantErrs, len(msgs)-wantErrs-1)
		}
	}
}

// TestSinkRows encodes a row as the map it stands for, in each value
// format the sink takes rows in, headers included.
func TestSinkRows(t *testing.T) {
	shape := stdlib.NewShape("id", "user", "at", "tags")
	row := stdlib.NewRow(shape)
	copy(row.Vals(), []any{int64(7), "u\"7", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), []any{"a", int64(1)}})
	for _, format := range []string{"json", "string"} {
		cfg := config("out", "127.0.0.1:1", map[string]any{"topic": "krow-rows", "format": stdlib.Ident(format)})
		sk, err := SinkSpec.NewSink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := sk.(*sink)
		hs := []stdlib.Header{{Key: "h", Value: []byte("v")}}
		fromRow, _, err := s.message(&stdlib.Record{Value: row, Headers: hs}, nil)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		fromMap, _, err := s.message(&stdlib.Record{Value: row.Map(), Headers: hs}, nil)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if string(fromRow.Value) != string(fromMap.Value) || len(fromRow.Value) == 0 || !reflect.DeepEqual(fromRow.Headers, fromMap.Headers) {
			t.Errorf("%s: row encodes to %q %v, its map to %q %v", format, fromRow.Value, fromRow.Headers, fromMap.Value, fromMap.Headers)
		}
	}
}
