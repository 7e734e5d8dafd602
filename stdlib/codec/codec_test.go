package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"pipe.dev/pipe/lang/types"
)

const benchLine = `{"id":123456,"user":"u17","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}`

func mustNew(t testing.TB, format string, schema *types.Type, opts Options) Codec {
	t.Helper()
	c, err := New(format, schema, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestJSONDecode(t *testing.T) {
	c := mustNew(t, "json", nil, Options{})
	m, err := c.Decode([]byte(` {"a":1,"b":-2.5,"c":"x\"y\u00e9\ud83d\ude00","d":[true,false,null],"e":{"f":1e3},"g":12345678901234567890, "h":-0} `))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a": int64(1), "b": -2.5, "c": "x\"yé😀", "d": []any{true, false, nil},
		"e": map[string]any{"f": 1000.0}, "g": 12345678901234567890.0, "h": int64(0),
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %#v\nwant %#v", m, want)
	}
}

func TestJSONDecodeErrors(t *testing.T) {
	c := mustNew(t, "json", nil, Options{})
	for _, in := range []string{
		``, `[1]`, `"x"`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":01}`, `{"a":1.}`, `{"a":1e}`,
		`{"a":tru}`, `{"a":"x}`, "{\"a\":\"\x01\"}", `{"a":1} x`, `{"a":"\q"}`, `{"a":[1,]}`, `{a:1}`,
		`{"a":-}`, `{"a":"\u12"}`,
	} {
		if _, err := c.Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%q) succeeded", in)
		} else if !strings.HasPrefix(err.Error(), "json: ") {
			t.Errorf("Decode(%q): error %q lacks the json: prefix", in, err)
		}
	}
}

// TestJSONAgreesWithEncodingJSON checks decode and encode against the
// standard library on a set of documents.
func TestJSONAgreesWithEncodingJSON(t *testing.T) {
	c := mustNew(t, "json", nil, Options{})
	docs := []string{
		benchLine,
		`{"s":"<&>\u2028\u2029\t\n\r\u0001\\/","n":[1.5e-7,1e21,123.456,-0.0,3e300],"o":{"z":1,"a":{"b":[]}}}`,
		`{"": "", "k": "\ud83d\ude00", "u": "日本語"}`,
		`{"f": 0.1, "i": 42}`,
	}
	for _, doc := range docs {
		m, err := c.Decode([]byte(doc))
		if err != nil {
			t.Fatalf("Decode(%s): %v", doc, err)
		}
		var std map[string]any
		if err := json.Unmarshal([]byte(doc), &std); err != nil {
			t.Fatal(err)
		}
		got, err := c.Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(std); err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSuffix(buf.String(), "\n")
		if string(got) != want {
			t.Errorf("round trip of %s\n got %s\nwant %s", doc, got, want)
		}
	}
}

func TestJSONInt64Exact(t *testing.T) {
	c := mustNew(t, "json", nil, Options{})
	in := `{"big":9223372036854775807,"neg":-9223372036854775808,"over":9223372036854775808}`
	m, err := c.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m["big"] != int64(9223372036854775807) || m["neg"] != int64(-9223372036854775808) || m["over"] != 9223372036854775808.0 {
		t.Fatalf("got %#v", m)
	}
}

func TestJSONEncodeCachedKeys(t *testing.T) {
	c := mustNew(t, "json", nil, Options{})
	for _, tc := range []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{"b": int64(1), "a": "x"}, `{"a":"x","b":1}`},
		{map[string]any{"b": int64(2), "a": "y"}, `{"a":"y","b":2}`},
		{map[string]any{"b": int64(2), "c": "y"}, `{"b":2,"c":"y"}`},
		{map[string]any{"b": int64(2)}, `{"b":2}`},
		{map[string]any{}, `{}`},
		{map[string]any{"t": time.Date(2024, 1, 1, 0, 0, 1, 500, time.UTC), "b": []byte("hi"), "x": nil}, `{"b":"aGk=","t":"2024-01-01T00:00:01.0000005Z","x":null}`},
	} {
		got, err := c.Append(nil, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
	if _, err := c.Append(nil, map[string]any{"x": struct{}{}}); err == nil || !strings.Contains(err.Error(), `field "x"`) {
		t.Errorf("unsupported value: err = %v", err)
	}
}

var orderType = types.RecordOf(
	&types.Field{Name: "id", Type: types.IntType},
	&types.Field{Name: "amount", Type: types.FloatType},
	&types.Field{Name: "ts", Type: types.TimestampType},
	&types.Field{Name: "note", Type: types.StringType.WithOptional(true)},
	&types.Field{Name: "customer", Type: types.RecordOf(&types.Field{Name: "vip", Type: types.BoolType})},
	&types.Field{Name: "tags", Type: types.ListOf(types.StringType)},
)

func TestJSONSchema(t *testing.T) {
	c := mustNew(t, "json", orderType, Options{})
	m, err := c.Decode([]byte(`{"extra":1,"tags":["a"],"customer":{"vip":true,"x":2},"ts":"2024-01-01T00:00:01Z","amount":5,"id":7.0}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": int64(7), "amount": 5.0, "ts": time.Date(2024, 1, 1, 0, 0, 1, 0, time.UTC),
		"customer": map[string]any{"vip": true}, "tags": []any{"a"},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %#v\nwant %#v", m, want)
	}
	out, err := c.Append(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	// An absent optional field stays absent: what was read is written.
	if w := `{"id":7,"amount":5,"ts":"2024-01-01T00:00:01Z","customer":{"vip":true},"tags":["a"]}`; string(out) != w {
		t.Errorf("typed encode\n got %s\nwant %s", out, w)
	}
	// A null one is null; a record with its first fields absent starts
	// with no comma, appended to what the buffer holds.
	m["note"] = nil
	if out, _ = c.Append(nil, m); !strings.Contains(string(out), `"ts":"2024-01-01T00:00:01Z","note":null,"customer"`) {
		t.Errorf("null optional field: %s", out)
	}
	first := mustNew(t, "json", types.RecordOf(
		&types.Field{Name: "a", Type: types.IntType.WithOptional(true)},
		&types.Field{Name: "b", Type: types.IntType.WithOptional(true)},
		&types.Field{Name: "c", Type: types.IntType}), Options{})
	for _, tc := range []struct {
		m    map[string]any
		want string
	}{
		{map[string]any{"c": int64(3)}, `x{"c":3}`},
		{map[string]any{"b": int64(2), "c": int64(3)}, `x{"b":2,"c":3}`},
		{map[string]any{"a": int64(1), "c": int64(3)}, `x{"a":1,"c":3}`},
		{map[string]any{}, `x{"c":null}`},
		{map[string]any{"z": int64(9)}, `x{"c":null,"z":9}`},
	} {
		if out, err := first.Append([]byte("x"), tc.m); err != nil || string(out) != tc.want {
			t.Errorf("Append(%v) = %s, %v; want %s", tc.m, out, err, tc.want)
		}
	}
	fewer := mustNew(t, "json", types.RecordOf(&types.Field{Name: "a", Type: types.IntType.WithOptional(true)}), Options{})
	if out, _ := fewer.Append([]byte("x"), map[string]any{"z": int64(9)}); string(out) != `x{"z":9}` {
		t.Errorf("only an undeclared field: %s", out)
	}
	m["zz"], m["aa"] = "1", "2"
	out, _ = c.Append(nil, m)
	if !strings.HasSuffix(string(out), `"tags":["a"],"aa":"2","zz":"1"}`) {
		t.Errorf("undeclared fields not appended sorted: %s", out)
	}
	for in, msg := range map[string]string{
		`{"amount":1,"ts":"2024-01-01T00:00:01Z","customer":{"vip":true},"tags":[]}`:           `field "id" is missing`,
		`{"id":"x","amount":1,"ts":"2024-01-01T00:00:01Z","customer":{"vip":true},"tags":[]}`:  `field "id": want int, got string`,
		`{"id":1,"amount":1,"ts":"yesterday","customer":{"vip":true},"tags":[]}`:               `field "ts": want an RFC 3339 timestamp`,
		`{"id":1,"amount":1,"ts":"2024-01-01T00:00:01Z","customer":{"vip":1},"tags":[]}`:       `field "customer.vip": want bool, got int`,
		`{"id":1,"amount":1,"ts":"2024-01-01T00:00:01Z","customer":{"vip":true},"tags":[1]}`:   `field "tags[0]": want string, got int`,
		`{"id":1.5,"amount":1,"ts":"2024-01-01T00:00:01Z","customer":{"vip":true},"tags":[]}`:  `field "id": want int, got 1.5`,
		`{"id":null,"amount":1,"ts":"2024-01-01T00:00:01Z","customer":{"vip":true},"tags":[]}`: `field "id" is null`,
	} {
		_, err := c.Decode([]byte(in))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Decode(%s): err = %v, want %q", in, err, msg)
		}
	}
}

func TestCSV(t *testing.T) {
	schema := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType},
		&types.Field{Name: "score", Type: types.FloatType.WithOptional(true)},
		&types.Field{Name: "ok", Type: types.BoolType},
	)
	c := mustNew(t, "csv", schema, Options{})
	hc := c.(HeaderCodec)
	if err := hc.DecodeHeader([]byte("id,name,score,ok")); err != nil {
		t.Fatal(err)
	}
	m, err := c.Decode([]byte(`7,"a, ""b""",,true`))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"id": int64(7), "name": `a, "b"`, "ok": true}; !reflect.DeepEqual(m, want) {
		t.Fatalf("got %#v, want %#v", m, want)
	}
	head, _ := hc.AppendHeader(nil, m)
	row, err := c.Append(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if string(head) != "id,name,score,ok" || string(row) != `7,"a, ""b""",,true` {
		t.Errorf("encode: %s / %s", head, row)
	}
	for in, msg := range map[string]string{
		`x,a,1,true`:   `field "id": want int, got "x"`,
		`1,a,1`:        `row has 3 fields, want 4`,
		`1,"a,1,true`:  `unterminated quoted field`,
		`1,a"b,1,true`: `bare "`,
		`1,a,1,maybe`:  `field "ok": want bool`,
		`,a,1,true`:    `field "id" is empty`,
	} {
		if _, err := c.Decode([]byte(in)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Decode(%s): err = %v, want %q", in, err, msg)
		}
	}

	u := mustNew(t, "csv", nil, Options{}).(HeaderCodec)
	if _, err := u.Decode([]byte("1,2")); err == nil {
		t.Error("decode without columns succeeded")
	}
	if err := u.DecodeHeader([]byte("a;b,c")); err != nil {
		t.Fatal(err)
	}
	m, err = u.Decode([]byte("1;2,3"))
	if err != nil || !reflect.DeepEqual(m, map[string]any{"a;b": "1;2", "c": "3"}) {
		t.Errorf("untyped: %v %v", m, err)
	}
	e := mustNew(t, "csv", nil, Options{Comma: ';'}).(HeaderCodec)
	head, _ = e.AppendHeader(nil, map[string]any{"b": 1.5, "a": "x;y"})
	row, _ = e.Append(nil, map[string]any{"b": 1.5, "a": "x;y"})
	if string(head) != "a;b" || string(row) != `"x;y";1.5` {
		t.Errorf("sorted columns: %s / %s", head, row)
	}
}

// TestCSVHeader checks that rows map to columns by the header's names and
// that a header not matching the declared columns is an error naming them.
func TestCSVHeader(t *testing.T) {
	names := types.RecordOf(&types.Field{Name: "first", Type: types.StringType}, &types.Field{Name: "last", Type: types.StringType})
	c := mustNew(t, "csv", names, Options{}).(HeaderCodec)
	if err := c.DecodeHeader([]byte("\ufefflast,first")); err != nil {
		t.Fatal(err)
	}
	m, err := c.Decode([]byte("Lovelace,Ada"))
	if want := map[string]any{"first": "Ada", "last": "Lovelace"}; err != nil || !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v, %v; want %v", m, err, want)
	}

	schema := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "name", Type: types.StringType},
		&types.Field{Name: "note", Type: types.StringType.WithOptional(true)},
	)
	for head, want := range map[string]string{
		"id,nme":         `csv header does not match the declared columns (id, name, note): unknown column "nme"; missing column "name"`,
		"name":           `missing column "id"`,
		"id,name,x,y":    `unknown columns "x", "y"`,
		"id,name,id":     `column "id" appears twice`,
		"id,\"name":      `unterminated quoted field`,
		"id,name,no\xfe": `invalid UTF-8 at offset 10`,
	} {
		c := mustNew(t, "csv", schema, Options{}).(HeaderCodec)
		if err := c.DecodeHeader([]byte(head)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeHeader(%q): %v, want %q", head, err, want)
		}
	}
	// An optional field's column may be left out.
	c = mustNew(t, "csv", schema, Options{}).(HeaderCodec)
	if err := c.DecodeHeader([]byte("name,id")); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Decode([]byte("x,7")); err != nil || !reflect.DeepEqual(m, map[string]any{"id": int64(7), "name": "x"}) {
		t.Errorf("subset header: %v %v", m, err)
	}
	// Declared columns name the file's columns; the schema picks fields.
	c = mustNew(t, "csv", schema, Options{Columns: []string{"id", "name", "extra"}}).(HeaderCodec)
	if err := c.DecodeHeader([]byte("extra,name")); err == nil || !strings.Contains(err.Error(), `missing column "id"`) {
		t.Errorf("declared columns: %v", err)
	}

	for line, want := range map[string]bool{
		"name,id": true, "id": true, "id,note,name": true,
		"1,Ada": false, "id,nme": false, "id,id": false, "id,\"x": false,
	} {
		if got := mustNew(t, "csv", schema, Options{}).(HeaderCodec).IsHeader([]byte(line)); got != want {
			t.Errorf("IsHeader(%q) = %v, want %v", line, got, want)
		}
	}
	if !mustNew(t, "csv", nil, Options{}).(HeaderCodec).IsHeader([]byte("1,2")) {
		t.Error("without declared columns the first line is not the header")
	}
}

// TestInvalidUTF8 checks that invalid UTF-8 in a text format is a decode
// error naming its offset, or kept byte for byte with KeepInvalidUTF8.
func TestInvalidUTF8(t *testing.T) {
	schema := types.RecordOf(&types.Field{Name: "a", Type: types.StringType}, &types.Field{Name: "l", Type: types.ListOf(types.StringType).WithOptional(true)})
	for _, tc := range []struct {
		format string
		schema *types.Type
		in     string
		err    string // with the default
		field  string // the field kept with KeepInvalidUTF8
		kept   string
	}{
		{"json", nil, "{\"a\":\"x\xffy\"}", "json: offset 7: invalid UTF-8 in a string", "a", "x\xffy"},
		{"json", nil, "{\"a\":\"\\n\xc3\"}", "json: offset 8: invalid UTF-8", "a", "\n\xc3"},
		{"json", nil, "{\"\xe2\x82\":1}", "json: offset 2: invalid UTF-8", "\xe2\x82", ""},
		{"json", nil, `{"a":"x\ud800y"}`, `json: offset 7: invalid UTF-8 (lone surrogate \ud800)`, "a", "x\xed\xa0\x80y"},
		{"json", nil, `{"a":"\udc00\ud800"}`, `lone surrogate \udc00`, "a", "\xed\xb0\x80\xed\xa0\x80"},
		{"csv", schema, "x\xffy,", "csv: invalid UTF-8 at offset 1", "a", "x\xffy"},
		{"csv", schema, `x,"[""\ud800""]"`, `lone surrogate \ud800`, "a", "x"},
		{"lines", nil, "ok \xf0\x9f\x98", "lines: invalid UTF-8 at offset 3", "value", "ok \xf0\x9f\x98"},
	} {
		_, err := mustNew(t, tc.format, tc.schema, Options{}).Decode([]byte(tc.in))
		if !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s %q: err = %v, want %q", tc.format, tc.in, err, tc.err)
		}
		m, err := mustNew(t, tc.format, tc.schema, Options{KeepInvalidUTF8: true}).Decode([]byte(tc.in))
		if err != nil {
			t.Errorf("%s %q kept: %v", tc.format, tc.in, err)
			continue
		}
		if _, ok := m[tc.field]; !ok || (tc.kept != "" && m[tc.field] != tc.kept) {
			t.Errorf("%s %q kept: got %q", tc.format, tc.in, m)
		}
	}
	// U+FFFD itself is valid text.
	for _, f := range []string{"json", "lines"} {
		in := "{\"a\":\"\ufffd\"}"
		if _, err := mustNew(t, f, nil, Options{}).Decode([]byte(in)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestRaw(t *testing.T) {
	l := mustNew(t, "lines", nil, Options{})
	buf := []byte("hello")
	m, _ := l.Decode(buf)
	buf[0] = 'j'
	if m["value"] != "hello" {
		t.Errorf("lines decode: %v", m)
	}
	out, _ := l.Append(nil, m)
	if string(out) != "hello" {
		t.Errorf("lines encode: %s", out)
	}
	b := mustNew(t, "bytes", nil, Options{})
	m, _ = b.Decode(buf)
	buf[0] = 'x'
	if !bytes.Equal(m["value"].([]byte), []byte("jello")) {
		t.Errorf("bytes decode aliases its input: %q", m["value"])
	}
	if _, err := New("xml", nil, Options{}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := New("json", types.IntType, Options{}); err == nil {
		t.Error("non-record schema accepted")
	}
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(benchLine))
	f.Add([]byte(`{"a":[1,{"b":"\u00e9"}],"c":-1.5e-9}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newJSON(nil)
		m, err := c.Decode(data)
		var std map[string]any
		stdErr := json.Unmarshal(data, &std)
		// encoding/json replaces invalid UTF-8 with U+FFFD; pipe refuses it,
		// so that a record error names the byte instead of changing the data.
		invalidUTF8 := err != nil && !utf8.Valid(data) && strings.Contains(err.Error(), "invalid UTF-8")
		if (err == nil) != (stdErr == nil) && !(stdErr == nil && std == nil) && !invalidUTF8 {
			t.Fatalf("Decode(%q): err %v, encoding/json err %v", data, err, stdErr)
		}
		if err != nil {
			return
		}
		out, err := c.Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := c.Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		out2, _ := c.Append(nil, m2)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable: %s vs %s", out, out2)
		}
	})
}

func TestArena(t *testing.T) {
	var a Arena
	ts := time.Date(2024, 1, 1, 0, 0, 1, 0, time.UTC)
	var vals []any
	for i := range 1000 {
		vals = append(vals, a.String(fmt.Sprint("s", i)), a.Int(int64(i)*1000-7), a.Float(float64(i)+0.5), a.Time(ts.Add(time.Duration(i))))
	}
	runtime.GC()
	for i := range 1000 {
		want := []any{fmt.Sprint("s", i), int64(i)*1000 - 7, float64(i) + 0.5, ts.Add(time.Duration(i))}
		for k, w := range want {
			if got := vals[4*i+k]; got != w {
				t.Fatalf("value %d/%d: got %#v, want %#v", i, k, got, w)
			}
		}
	}
}

func TestDecodeOwned(t *testing.T) {
	c := mustNew(t, "json", nil, Options{})
	data := []byte(`{"a":"xyz","b":"q\"r"}`)
	m, err := c.(OwnedDecoder).DecodeOwned(data)
	if err != nil {
		t.Fatal(err)
	}
	if m["a"] != "xyz" || m["b"] != `q"r` {
		t.Fatalf("got %v", m)
	}
}
