package core

import (
	"context"
	"reflect"
	"testing"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

var addressType = types.RecordOf(
	&types.Field{Name: "city", Type: types.StringType},
	&types.Field{Name: "geo", Type: types.RecordOf(&types.Field{Name: "lat", Type: types.FloatType})},
)

var rowType = types.RecordOf(
	&types.Field{Name: "id", Type: types.IntType},
	&types.Field{Name: "ship_to", Type: addressType.WithOptional(true)},
	&types.Field{Name: "tags", Type: types.MapOf(types.StringType)},
)

func applyOne(t *testing.T, tr stdlib.Transform, v map[string]any) (map[string]any, error) {
	t.Helper()
	var out []stdlib.Record
	r := stdlib.Record{Value: v}
	err := tr.Apply(context.Background(), &r, func(x stdlib.Record) { out = append(out, x) })
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		t.Fatalf("emitted %d records, want 1", len(out))
	}
	return out[0].Value.(map[string]any), nil
}

func TestFlattenType(t *testing.T) {
	got, err := FlattenSpec.Result(map[string]any{"separator": "."}, rowType)
	if err != nil {
		t.Fatal(err)
	}
	want := "{id: int, ship_to.city: string?, ship_to.geo.lat: float?, tags: map<string, string>}"
	if got.String() != want {
		t.Errorf("flatten type = %s, want %s", got, want)
	}
	if out, _ := FlattenSpec.Result(nil, nil); out != nil {
		t.Errorf("untyped input gave %s", out)
	}
}

func TestFlattenApply(t *testing.T) {
	tr, err := FlattenSpec.NewTransform(stdlib.Config{Attrs: map[string]any{"separator": "_"}, Input: rowType})
	if err != nil {
		t.Fatal(err)
	}
	got, err := applyOne(t, tr, map[string]any{
		"id":      int64(1),
		"ship_to": map[string]any{"city": "Delft", "geo": map[string]any{"lat": 52.0}},
		"tags":    map[string]any{"a": "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": int64(1), "ship_to_city": "Delft", "ship_to_geo_lat": 52.0, "tags": map[string]any{"a": "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flatten = %v, want %v", got, want)
	}
	// An absent optional record leaves its fields absent.
	got, _ = applyOne(t, tr, map[string]any{"id": int64(2), "ship_to": nil, "tags": map[string]any{}})
	if _, ok := got["ship_to"]; ok || len(got) != 2 {
		t.Errorf("flatten of a null record = %v", got)
	}
	// Untyped: every nested object is flattened (separator by default).
	tr, _ = FlattenSpec.NewTransform(config(FlattenSpec, "f", nil))
	got, _ = applyOne(t, tr, map[string]any{"a": map[string]any{"b": map[string]any{"c": "x"}}})
	if !reflect.DeepEqual(got, map[string]any{"a_b_c": "x"}) {
		t.Errorf("untyped flatten = %v", got)
	}
}

func TestExtract(t *testing.T) {
	in := types.RecordOf(&types.Field{Name: "after", Type: addressType.WithOptional(true)}, &types.Field{Name: "op", Type: types.StringType})
	typ, err := ExtractSpec.Result(map[string]any{"field": "after"}, in)
	if err != nil || !types.Equal(typ, addressType) {
		t.Fatalf("extract type = %v, %v; want %s", typ, err, addressType)
	}
	if _, err := ExtractSpec.Result(map[string]any{"field": "op"}, in); err == nil {
		t.Error("extracting a string field was accepted")
	}
	if _, err := ExtractSpec.Result(map[string]any{"field": "aftr"}, in); err == nil {
		t.Error("extracting a missing field was accepted")
	}
	tr, err := ExtractSpec.NewTransform(stdlib.Config{Attrs: map[string]any{"field": "after"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := applyOne(t, tr, map[string]any{"op": "c", "after": map[string]any{"city": "Gent"}})
	if err != nil || !reflect.DeepEqual(got, map[string]any{"city": "Gent"}) {
		t.Errorf("extract = %v, %v", got, err)
	}
	if _, err := applyOne(t, tr, map[string]any{"op": "d", "after": nil}); err == nil {
		t.Error("a record without the field was not an error")
	}
}
