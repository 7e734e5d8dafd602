package avro

import (
	"reflect"
	"strings"
	"testing"
	"time"

	havro "github.com/hamba/avro/v2"
)

// A Resolver of a schema to itself decodes every kind, logical types,
// unions and named types included, to the same pipe values as Decode.
func TestResolverAgreesWithDecode(t *testing.T) {
	text := strings.TrimSuffix(logicalSchema, "]}") + `,
	  {"name":"i","type":"int"},{"name":"f","type":"float"},{"name":"b","type":"boolean"},
	  {"name":"by","type":"bytes"},
	  {"name":"fx","type":{"type":"fixed","name":"F2","size":2}},
	  {"name":"optts","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
	  {"name":"u","type":["null","string","long"]},
	  {"name":"ints","type":{"type":"array","items":"int"}},
	  {"name":"fm","type":{"type":"map","values":"float"}},
	  {"name":"sub","type":{"type":"record","name":"S","fields":[{"name":"x","type":"int"}]}},
	  {"name":"sub2","type":["null","S"]}]}`
	s, err := havro.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	ty, err := TypeOf(s)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{
		"dec": "-12.34", "fdec": "123456.789", "day": time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"ms": time.Date(2024, 2, 29, 13, 14, 15, 678e6, time.UTC), "us": time.Date(1960, 2, 29, 13, 14, 15, 678901e3, time.UTC),
		"tm": int64(47655678), "tu": int64(47655678901), "id": "6f1c9a52-3f6e-4c59-9b8e-3c0c39b1e0a1",
		"i": int64(-7), "f": 1.5, "b": true, "by": []byte{0, 1}, "fx": []byte{2, 3},
		"opt": int64(5), "optts": time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "u": int64(9), "e": "B",
		"arr": []any{"a"}, "m": map[string]any{"k": 0.5}, "ints": []any{int64(1), int64(2)}, "fm": map[string]any{"k": 0.25},
		"sub": map[string]any{"x": int64(3)}, "sub2": map[string]any{"x": int64(4)},
	}
	b, err := NewEncoder(s).Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Decode(s, ty, b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(s, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("field %s: resolver %#v (%T), Decode %#v (%T)", k, g, g, w, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("resolver has %d fields, Decode %d", len(got), len(want))
	}
}
