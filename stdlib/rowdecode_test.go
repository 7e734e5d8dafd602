package stdlib

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/codec"
)

// TestRowDecoder decodes messages of changing layouts into rows, as the
// file source does.
func TestRowDecoder(t *testing.T) {
	c, err := codec.New("json", nil, codec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rd := NewRowDecoder(c.(codec.FieldsCodec), nil)
	decode := func(s string) any {
		t.Helper()
		v, err := rd.Decode([]byte(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return v
	}
	asRow := func(v any) *Row {
		t.Helper()
		r, ok := v.(*Row)
		if !ok {
			t.Fatalf("got %T, want a row", v)
		}
		return r
	}
	line := []byte(`{"id":1,"user":"u1"}`)
	r1, err := rd.Decode(line)
	if err != nil {
		t.Fatal(err)
	}
	copy(line, `{"xx":2,"yyyy":"u2"}`) // the shape must not alias a message
	r2 := asRow(decode(`{"id":2,"user":"u2"}`))
	if asRow(r1).Shape() != r2.Shape() || !reflect.DeepEqual(r2.Map(), map[string]any{"id": int64(2), "user": "u2"}) {
		t.Fatalf("second row %v of shape %v, first of %v", r2.Map(), r2.Shape().Names(), asRow(r1).Shape().Names())
	}
	r3 := asRow(decode(`{"id":3,"name":"u3"}`))
	if !reflect.DeepEqual(r3.Map(), map[string]any{"id": int64(3), "name": "u3"}) {
		t.Fatalf("other layout: %v", r3.Map())
	}
	if r4 := asRow(decode(`{"id":4}`)); !reflect.DeepEqual(r4.Map(), map[string]any{"id": int64(4)}) {
		t.Fatalf("fewer fields: %v", r4.Map())
	}
	// More fields than a row holds inline, then the same layout again.
	wide := func(n int) (string, map[string]any) {
		var b strings.Builder
		want := map[string]any{}
		for i := range 10 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"f%d":%d`, i, n+i)
			want[fmt.Sprintf("f%d", i)] = int64(n + i)
		}
		return "{" + b.String() + "}", want
	}
	for _, n := range []int{10, 20} {
		msg, want := wide(n)
		if r := asRow(decode(msg)); !reflect.DeepEqual(r.Map(), want) {
			t.Fatalf("%s: %v", msg, r.Map())
		}
	}
	if m, ok := decode(`{"id":5,"id":6}`).(map[string]any); !ok || !reflect.DeepEqual(m, map[string]any{"id": int64(6)}) {
		t.Fatalf("a repeated name: %#v", m)
	}
	if _, err := rd.Decode([]byte(`{"id":`)); err == nil {
		t.Fatal("a bad message decoded")
	}
	for i := range maxRowShapes {
		decode(fmt.Sprintf(`{"f%d":1}`, i))
	}
	if m, ok := decode(`{"g":1}`).(map[string]any); !ok || m["g"] != int64(1) {
		t.Fatalf("past %d layouts: %#v, want a map", maxRowShapes, m)
	}
}

// TestRowDecoderTyped decodes messages of alternating layouts with a
// schema: each value (as a map) and each error is the typed codec's.
func TestRowDecoderTyped(t *testing.T) {
	schema := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "at", Type: types.TimestampType},
		&types.Field{Name: "n", Type: types.FloatType.WithOptional(true)},
	)
	typed, err := codec.New("json", schema, codec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.New("json", nil, codec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rd := NewRowDecoder(c.(codec.FieldsCodec), schema)
	msgs := []string{
		`{"id":1,"at":"2024-01-01T00:00:01Z"}`,
		`{"id":2,"at":"2024-01-01T00:00:02Z","x":"dropped","n":3}`,
		`{"id":3,"at":"2024-01-01T00:00:03Z"}`,
		`{"at":"2024-01-01T00:00:04Z","n":null,"id":4.0}`,
		`{"id":5,"at":"2024-01-01T00:00:05Z","x":"dropped","n":3}`,
		`{"id":6,"at":"2024-01-01T00:00:06Z","n":"7"}`,
		`{"id":7,"at":"then"}`,
		`{"id":null,"at":"2024-01-01T00:00:08Z"}`,
		`{"at":"2024-01-01T00:00:09Z"}`,
		`{"id":10,"id":11,"at":"2024-01-01T00:00:10Z","x":1}`,
		`{"id":12,"id":"13","at":"2024-01-01T00:00:12Z"}`,
		`{"id":14.5,"at":"2024-01-01T00:00:14Z"}`,
	}
	for _, msg := range msgs {
		want, wantErr := typed.Decode([]byte(msg))
		got, err := rd.Decode([]byte(msg))
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("%s: error %v, want %v", msg, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(Materialize(got), want) {
			t.Errorf("%s: %#v, want %#v", msg, Materialize(got), want)
		}
	}
}
