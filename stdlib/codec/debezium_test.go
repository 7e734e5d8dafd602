package codec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
)

// TestDebeziumEncode checks the envelope written for each kind of change.
func TestDebeziumEncode(t *testing.T) {
	c := mustNew(t, "debezium", nil, Options{}).(*debeziumCodec)
	c.now = func() time.Time { return time.UnixMilli(1700000000123) }
	commit := time.UnixMilli(1700000000000).UTC()
	for _, tc := range []struct {
		op, want string
		before   any
		after    any
	}{
		{"insert", "c", nil, map[string]any{"id": int64(1), "name": "x"}},
		{"update", "u", map[string]any{"id": int64(1), "name": "x"}, map[string]any{"id": int64(1), "name": "y"}},
		{"delete", "d", map[string]any{"id": int64(1)}, nil},
		{"read", "r", nil, map[string]any{"id": int64(2), "name": "z"}},
	} {
		v := map[string]any{"op": tc.op, "table": "public.items", "xid": int64(555), "lsn": "0/16B3748",
			"commit_time": commit, "before": tc.before, "after": tc.after}
		out, err := c.Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		src := got["source"].(map[string]any)
		if got["op"] != tc.want || got["ts_ms"] != 1700000000123.0 || src["connector"] != "postgresql" ||
			src["schema"] != "public" || src["table"] != "items" || src["txId"] != 555.0 ||
			src["lsn"] != float64(0x16B3748) || src["ts_ms"] != 1700000000000.0 || src["snapshot"] != map[bool]string{true: "true", false: "false"}[tc.op == "read"] {
			t.Errorf("%s: %s", tc.op, out)
		}
		wantBefore, _ := json.Marshal(tc.before)
		wantAfter, _ := json.Marshal(tc.after)
		gb, _ := json.Marshal(got["before"])
		ga, _ := json.Marshal(got["after"])
		if string(gb) != string(wantBefore) || string(ga) != string(wantAfter) {
			t.Errorf("%s: before %s after %s", tc.op, gb, ga)
		}
		// What is written reads back as the row and its operation.
		if tc.op == "read" || tc.op == "insert" || tc.op == "update" || tc.op == "delete" {
			row, err := c.Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.after
			if tc.op == "delete" {
				want = tc.before
			}
			w := map[string]any{DebeziumOp: tc.op}
			for k, x := range want.(map[string]any) {
				w[k] = x
			}
			if !reflect.DeepEqual(row, w) {
				t.Errorf("%s read back: %v, want %v", tc.op, row, w)
			}
		}
	}
	if _, err := c.Append(nil, map[string]any{"id": int64(1)}); err == nil || !strings.Contains(err.Error(), "not a change") {
		t.Errorf("record without op: %v", err)
	}
	if _, err := c.Append(nil, map[string]any{"op": "insert", "lsn": "nope"}); err == nil || !strings.Contains(err.Error(), "not an LSN") {
		t.Errorf("bad lsn: %v", err)
	}
}

// TestDebeziumDecode checks events as Debezium's JSON converter writes
// them, with and without the schema wrapper, typed by a declared schema.
func TestDebeziumDecode(t *testing.T) {
	schema := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType.WithOptional(true)},
	)
	c := mustNew(t, "debezium", schema, Options{})
	for _, tc := range []struct{ in, want string }{
		{`{"before":null,"after":{"id":1,"name":"x","extra":true},"source":{"connector":"postgresql","lsn":24023128,"txId":555},"op":"c","ts_ms":1}`,
			`map[__op:insert id:1 name:x]`},
		{`{"schema":{"type":"struct"},"payload":{"before":{"id":1,"name":"x"},"after":{"id":1,"name":"y"},"source":{},"op":"u","ts_ms":1}}`,
			`map[__op:update id:1 name:y]`},
		{`{"before":{"id":1},"after":null,"source":{},"op":"d","ts_ms":1}`, `map[__op:delete id:1]`},
		{`{"before":null,"after":{"id":3},"source":{"snapshot":"true"},"op":"r","ts_ms":1}`, `map[__op:read id:3]`},
	} {
		m, err := c.Decode([]byte(tc.in))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got := fmtMap(m); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, got, tc.want)
		}
		if _, ok := m["id"].(int64); !ok {
			t.Errorf("%s: id is %T, not typed", tc.in, m["id"])
		}
	}
	for in, want := range map[string]string{
		`{"id":1}`:                                      "no op field",
		`{"op":"x","after":{"id":1}}`:                   `unknown op "x"`,
		`{"op":"t","before":null,"after":null}`:         "truncate event carries no row",
		`{"op":"c","before":null,"after":null}`:         "insert event without after",
		`{"op":"c","before":null,"after":{"name":"x"}}`: `field "id" is missing`,
	} {
		if _, err := c.Decode([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}

func fmtMap(m map[string]any) string {
	b := strings.Builder{}
	b.WriteString("map[")
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + ":")
		b.WriteString(strings.Trim(strings.TrimSpace(toString(m[k])), `"`))
	}
	return b.String() + "]"
}

func toString(v any) string {
	out, _ := json.Marshal(v)
	return string(out)
}

// TestCheckDebezium checks which record types may be written as envelopes.
func TestCheckDebezium(t *testing.T) {
	change := types.RecordOf(
		&types.Field{Name: "op", Type: types.StringType},
		&types.Field{Name: "before", Type: types.MapOf(types.AnyType).WithOptional(true)},
		&types.Field{Name: "after", Type: types.MapOf(types.AnyType).WithOptional(true)},
	)
	if err := CheckDebezium(change); err != nil {
		t.Errorf("change record: %v", err)
	}
	if err := CheckDebezium(nil); err != nil {
		t.Errorf("unknown type: %v", err)
	}
	row := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "op", Type: types.IntType})
	if err := CheckDebezium(row); err == nil || !strings.Contains(err.Error(), "field op is int") {
		t.Errorf("op not a string: %v", err)
	}
	row = types.RecordOf(&types.Field{Name: "id", Type: types.IntType})
	if err := CheckDebezium(row); err == nil || !strings.Contains(err.Error(), "lack op, before, after") {
		t.Errorf("a plain row: %v", err)
	}
}
