package stdlib

import (
	"fmt"
	"reflect"
	"testing"
)

func TestShapesAreInterned(t *testing.T) {
	a, b := NewShape("id", "user"), NewShape("id", "user")
	if a != b {
		t.Fatal("the same names gave two shapes")
	}
	if NewShape("user", "id") == a || NewShape("id") == a || NewShape("id\x00user") == a {
		t.Fatal("other names gave the same shape")
	}
}

func TestShapeIndex(t *testing.T) {
	for _, n := range []int{0, 1, shapeScan, shapeScan + 1, 40} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("f%d", i)
		}
		s := NewShape(names...)
		for i, name := range names {
			if got := s.Index(name); got != i {
				t.Errorf("%d fields: Index(%q) = %d, want %d", n, name, got, i)
			}
		}
		if got := s.Index("nope"); got != -1 {
			t.Errorf("%d fields: Index of a missing field = %d", n, got)
		}
	}
}

func TestRowReshapeAndMap(t *testing.T) {
	r := NewRow(NewShape("a", "b", "c"))
	copy(r.Vals(), []any{int64(1), "x", nil})
	if got, want := r.Map(), map[string]any{"a": int64(1), "b": "x", "c": nil}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Map() = %v, want %v", got, want)
	}
	if v, ok := r.Get("b"); !ok || v != "x" {
		t.Fatalf("Get(b) = %v, %v", v, ok)
	}
	if _, ok := r.Get("z"); ok {
		t.Fatal("Get of a missing field reported it present")
	}

	// Wider than the values held inline, then narrower: the values are
	// the row's own, and those left behind are cleared.
	names := make([]string, rowInline+3)
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
	}
	vals := r.Reshape(NewShape(names...))
	for i := range vals {
		vals[i] = i
	}
	if len(r.Map()) != len(names) || r.Map()["f10"] != 10 {
		t.Fatalf("after widening: %v", r.Map())
	}
	vals = r.Reshape(NewShape("x"))
	vals[0] = "only"
	if got := r.Map(); !reflect.DeepEqual(got, map[string]any{"x": "only"}) {
		t.Fatalf("after narrowing: %v", got)
	}
	for _, v := range r.vals[1:cap(r.vals)] {
		if v != nil {
			t.Fatalf("a value left behind by narrowing is still held: %v", v)
		}
	}

	inl := NewRow(NewShape("p", "q", "r", "s"))
	copy(inl.Vals(), []any{1, 2, 3, 4})
	inl.Reshape(NewShape("p"))
	for _, v := range inl.inline[1:] {
		if v != nil {
			t.Fatalf("an inline value left behind by narrowing is still held: %v", v)
		}
	}
}

func TestMaterialize(t *testing.T) {
	r := NewRow(NewShape("k"))
	r.Vals()[0] = "v"
	b := []Record{{Value: r}, {Value: "raw"}, {Value: map[string]any{"m": 1}}}
	MaterializeBatch(b)
	want := []any{map[string]any{"k": "v"}, "raw", map[string]any{"m": 1}}
	for i := range b {
		if !reflect.DeepEqual(b[i].Value, want[i]) {
			t.Errorf("record %d: %v, want %v", i, b[i].Value, want[i])
		}
	}
	if got := Materialize(r); !reflect.DeepEqual(got, want[0]) {
		t.Errorf("Materialize(row) = %v", got)
	}
}

func TestRowArena(t *testing.T) {
	var a RowArena
	narrow, wide := NewShape("a", "b"), NewShape("f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10")
	var rows []*Row
	for i := range 3 * rowArenaChunk {
		s := narrow
		if i%3 == 0 {
			s = wide
		}
		r := a.NewRow(s)
		if r.Shape() != s || len(r.Vals()) != s.Len() {
			t.Fatalf("row %d: shape %v with %d values", i, r.Shape().Names(), len(r.Vals()))
		}
		for j := range r.Vals() {
			if r.Vals()[j] != nil {
				t.Fatalf("row %d: value %d not nil", i, j)
			}
			r.Vals()[j] = int64(i*100 + j)
		}
		rows = append(rows, r)
	}
	// No row shares its values with another.
	for i, r := range rows {
		for j, v := range r.Vals() {
			if v != int64(i*100+j) {
				t.Fatalf("row %d value %d = %v", i, j, v)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { a.NewRow(narrow) }); n > 0.1 {
		t.Errorf("%.2f allocations per row", n)
	}
}
