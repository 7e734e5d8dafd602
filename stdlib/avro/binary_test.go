package avro

import (
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
)

const logicalSchema = `{"type":"record","name":"L","fields":[
  {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
  {"name":"fdec","type":{"type":"fixed","name":"F8","size":8,"logicalType":"decimal","precision":12,"scale":3}},
  {"name":"day","type":{"type":"int","logicalType":"date"}},
  {"name":"ms","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
  {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
  {"name":"id","type":{"type":"string","logicalType":"uuid"}},
  {"name":"opt","type":["null","long"],"default":null},
  {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
  {"name":"arr","type":{"type":"array","items":"string"}},
  {"name":"m","type":{"type":"map","values":"double"}}]}`

// What Encoder writes, hamba/avro (an independent decoder) reads as the
// same values; Decode reads it back as the pipe values it was given.
func TestEncodeDecodeLogical(t *testing.T) {
	s, err := havro.Parse(logicalSchema)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	ms := time.Date(2024, 2, 29, 13, 14, 15, 678e6, time.UTC)
	us := time.Date(1960, 2, 29, 13, 14, 15, 678901e3, time.UTC)
	in := map[string]any{
		"dec": "-12.34", "fdec": "123456.789", "day": day, "ms": ms, "us": us,
		"tm": int64(47655678), "tu": int64(47655678901), "id": "6f1c9a52-3f6e-4c59-9b8e-3c0c39b1e0a1",
		"opt": nil, "e": "B", "arr": []any{"x", "y"}, "m": map[string]any{"k": 1.5},
	}
	b, err := NewEncoder(s).Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := havro.Unmarshal(s, b, &h); err != nil {
		t.Fatalf("hamba cannot read it: %v", err)
	}
	if r := h["dec"].(*big.Rat); r.Cmp(big.NewRat(-1234, 100)) != 0 {
		t.Errorf("dec %v", r)
	}
	if r := h["fdec"].(*big.Rat); r.Cmp(big.NewRat(123456789, 1000)) != 0 {
		t.Errorf("fdec %v", r)
	}
	if !h["day"].(time.Time).Equal(day) || !h["ms"].(time.Time).Equal(ms) || !h["us"].(time.Time).Equal(us) {
		t.Errorf("times %v %v %v", h["day"], h["ms"], h["us"])
	}
	if h["tm"] != 47655678*time.Millisecond || h["tu"] != 47655678901*time.Microsecond {
		t.Errorf("times of day %v %v", h["tm"], h["tu"])
	}
	ty, err := TypeOf(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(s, ty, b)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range in {
		g := got[k]
		switch w := want.(type) {
		case time.Time:
			if !g.(time.Time).Equal(w) {
				t.Errorf("%s: %v, want %v", k, g, w)
			}
		case []any, map[string]any:
			if fmt.Sprint(g) != fmt.Sprint(w) {
				t.Errorf("%s: %v, want %v", k, g, w)
			}
		default:
			if g != want {
				t.Errorf("%s: %#v, want %#v", k, g, want)
			}
		}
	}
}

// Resolution: a reader type with a field the writer lacks reads it as
// null when optional and refuses it, naming it, when required; fields the
// reader lacks are skipped; long reads as float.
func TestResolve(t *testing.T) {
	w, _ := havro.Parse(`{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"gone","type":{"type":"array","items":"string"}},{"name":"c","type":"string"}]}`)
	b, err := NewEncoder(w).Append(nil, map[string]any{"a": int64(7), "gone": []any{"p", "q"}, "c": "x"})
	if err != nil {
		t.Fatal(err)
	}
	reader := types.RecordOf(&types.Field{Name: "a", Type: types.FloatType}, &types.Field{Name: "c", Type: types.StringType},
		&types.Field{Name: "added", Type: types.StringType.WithOptional(true)})
	if err := Resolvable(w, reader); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(w, reader, b)
	if err != nil || got["a"] != 7.0 || got["c"] != "x" || got["added"] != nil || len(got) != 3 {
		t.Errorf("got %v %v", got, err)
	}
	required := types.RecordOf(&types.Field{Name: "a", Type: types.IntType}, &types.Field{Name: "must", Type: types.StringType})
	if err := Resolvable(w, required); err == nil || !strings.Contains(err.Error(), "field must") {
		t.Errorf("missing required field: %v", err)
	}
	wrong := types.RecordOf(&types.Field{Name: "c", Type: types.IntType})
	if err := Resolvable(w, wrong); err == nil || !strings.Contains(err.Error(), "field c") {
		t.Errorf("wrong type: %v", err)
	}
}
