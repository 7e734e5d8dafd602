package protobuf

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	"pipe.dev/pipe/lang/types"
)

// Each protobuf construct maps to the pipe type the package documents.
func TestTypeOf(t *testing.T) {
	got, err := Compile("testdata/all.proto", "t.All", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, typ string }{
		{"s", "string"}, {"by", "bytes"}, {"b", "bool"}, {"i32", "int"}, {"i64", "int"},
		{"si", "int"}, {"u32", "int"}, {"f64", "int"}, {"f", "float"}, {"d", "float"},
		{"color", "string"}, {"tags", "list<string>"}, {"counts", "map<string, int>"},
		{"by_id", "map<string, {x: string}>"}, {"inner", "{x: string}?"},
		{"inners", "list<{x: string}>"}, {"opt", "string?"}, {"card", "string?"}, {"cash", "int?"},
		{"at", "timestamp?"}, {"took", "int?"}, {"wi", "int?"}, {"ws", "string?"},
		{"st", "map<string, any?>?"}, {"v", "any?"}, {"money", "{currency: string, units: int}?"},
	}
	if len(got.Fields) != len(want) {
		t.Fatalf("got %d fields, want %d: %s", len(got.Fields), len(want), got)
	}
	for i, f := range got.Fields {
		if f.Name != want[i].name || f.Type.String() != want[i].typ {
			t.Errorf("field %d: got %s %s, want %s %s", i, f.Name, f.Type, want[i].name, want[i].typ)
		}
	}
	if got.Wire == nil || got.Wire.Format != "protobuf" || got.Wire.Name != "t.All" {
		t.Errorf("wire %+v", got.Wire)
	}
	// A short name is looked up in the file's package.
	if _, err := Compile("testdata/all.proto", "Inner", nil); err != nil {
		t.Errorf("short name: %v", err)
	}
}

// A problem in a .proto file is reported at its file:line:col, relative
// to the directory the path was given in.
func TestCompileErrors(t *testing.T) {
	for _, c := range []struct{ path, msg, want string }{
		{"testdata/broken.proto", "t.B", "testdata/broken.proto:6:3: "},
		{"testdata/broken.proto", "t.B", "nosuch.Type"},
		{"testdata/all.proto", "t.Nope", `defines no message "t.Nope" (it defines t.Inner, t.All, t.Node, t.Packs)`},
		{"testdata/all.proto", "t.Node", "message t.Node contains itself"},
		{"testdata/none.proto", "t.X", "none.proto"},
	} {
		_, err := Compile(c.path, c.msg, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s#%s: got %v, want %q", c.path, c.msg, err, c.want)
		}
	}
}

// A record encodes and decodes back to itself, well-known types included,
// through a codec built from the type alone (the descriptor it keeps).
func TestRoundTrip(t *testing.T) {
	c := testCodec(t, "t.All")
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	in := map[string]any{
		"s": "héllo", "by": []byte{0, 1, 2}, "b": true, "i32": int64(-7), "i64": int64(1) << 40,
		"si": int64(-3), "u32": int64(4000000000), "f64": int64(1) << 62, "f": 1.5, "d": 2.25,
		"color": "RED", "tags": []any{"a", "b"}, "counts": map[string]any{"x": int64(3)},
		"by_id": map[string]any{"7": map[string]any{"x": "seven"}},
		"inner": map[string]any{"x": "in"}, "inners": []any{map[string]any{"x": "1"}, map[string]any{"x": "2"}},
		"opt": "o", "card": nil, "cash": int64(12), "at": at, "took": int64(1500 * time.Millisecond),
		"wi": int64(0), "ws": "w", "st": map[string]any{"k": "v", "n": 1.5, "l": []any{true, nil}},
		"v": "val", "money": map[string]any{"currency": "EUR", "units": int64(900)},
	}
	b, err := c.Append([]byte("prefix"), in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatal("Append does not append")
	}
	// The wire encoding decodes to the message dynamicpb builds of the
	// same record (field order may differ: proto.Marshal puts oneofs last).
	ref := dynamicpb.NewMessage(c.md)
	if err := setMessage(ref, in, ""); err != nil {
		t.Fatal(err)
	}
	back := dynamicpb.NewMessage(c.md)
	if err := proto.Unmarshal(b[len("prefix"):], back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ref, back) {
		t.Errorf("encoded message differs from dynamicpb's:\n got %v\nwant %v", back, ref)
	}
	out, err := c.Decode(b[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	// The wire decoder reads what dynamicpb reads.
	if viaDynamic, err := messageValue(back); err != nil || !reflect.DeepEqual(viaDynamic, out) {
		t.Errorf("decoded %v\ndynamicpb %v (%v)", out, viaDynamic, err)
	}
	if !reflect.DeepEqual(in, out) {
		for k, v := range in {
			if !reflect.DeepEqual(v, out[k]) {
				t.Errorf("field %s: got %#v, want %#v", k, out[k], v)
			}
		}
	}
	// An empty message decodes to the zero values, and null for the
	// fields with presence.
	out, err = c.Decode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if out["s"] != "" || out["i64"] != int64(0) || out["color"] != "COLOR_UNSPECIFIED" || out["inner"] != nil ||
		out["opt"] != nil || out["at"] != nil || len(out["tags"].([]any)) != 0 {
		t.Errorf("empty message: %v", out)
	}
}

func TestEncodeErrors(t *testing.T) {
	c := testCodec(t, "t.All")
	for _, e := range []struct {
		v    map[string]any
		want string
	}{
		{map[string]any{"s": int64(1)}, "field s: wrong type: string cannot hold int64"},
		{map[string]any{"color": "BLUE"}, `field color: "BLUE" is not a value of enum t.Color`},
		{map[string]any{"i32": int64(1) << 40}, "field i32: 1099511627776 does not fit int32"},
		{map[string]any{"inner": map[string]any{"x": true}}, "field inner.x: wrong type"},
		{map[string]any{"tags": []any{"a", nil}}, "field tags[1]: null in a repeated field"},
	} {
		_, err := c.Append(nil, e.v)
		if err == nil || !strings.Contains(err.Error(), e.want) {
			t.Errorf("%v: got %v, want %q", e.v, err, e.want)
		}
	}
	if _, err := c.Decode([]byte{0xff}); err == nil || !strings.Contains(err.Error(), "protobuf t.All") {
		t.Errorf("bad message: %v", err)
	}
	if _, err := NewCodec(types.RecordOf()); err == nil || !strings.Contains(err.Error(), ".proto") {
		t.Errorf("no descriptor: %v", err)
	}
}

// Packed and unpacked repeated scalars and maps with non-string keys
// round-trip, and decode as dynamicpb decodes them.
func TestRepeated(t *testing.T) {
	c := testCodec(t, "t.Packs")
	in := map[string]any{"p": []any{int64(1), int64(-2), int64(1) << 50}, "u": []any{int64(-3), int64(4)},
		"d": []any{0.5, -1.25}, "flags": map[string]any{"true": map[string]any{"x": "t"}, "false": map[string]any{"x": ""}}}
	b, err := c.Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("got %v\nwant %v", out, in)
	}
	m := dynamicpb.NewMessage(c.md)
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	if viaDynamic, err := messageValue(m); err != nil || !reflect.DeepEqual(viaDynamic, out) {
		t.Errorf("decoded %v\ndynamicpb %v (%v)", out, viaDynamic, err)
	}
	// dynamicpb's own packed encoding of the same reads the same.
	pb, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Decode(pb); err != nil || !reflect.DeepEqual(again, in) {
		t.Errorf("dynamicpb's encoding decoded as %v (%v)", again, err)
	}
}

// testCodec is the codec of message msg of testdata/all.proto.
func testCodec(t *testing.T, msg string) *Codec {
	t.Helper()
	typ, err := Compile("testdata/all.proto", msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCodec(typ)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
