package stdlib

import (
	"strconv"
	"strings"
	"sync"
)

// Row is a record value whose field names live in a Shape shared by every
// row of the same layout, and whose values are a slice in the shape's
// order: building one allocates once and hashes nothing, where a
// map[string]any allocates twice and hashes every key.
//
// Rows stay inside the executor. A source produces them only when its
// Config.Rows is set, and the executor turns a Row into the
// map[string]any it stands for (Materialize) before any stage that does
// not read rows itself sees it: a connector or a transform written against
// maps never meets one. A Row is never nested in another value.
type Row struct {
	shape  *Shape
	vals   []any
	inline [rowInline]any
}

// rowInline is how many values a Row holds without a second allocation.
const rowInline = 8

// NewRow returns a row of shape s with every value nil.
func NewRow(s *Shape) *Row {
	r := &Row{shape: s}
	r.vals = r.slots(len(s.names))
	return r
}

// RowArena hands out rows from chunks allocated together, so that a
// source building a row per record allocates once per rowArenaChunk
// records rather than once per record. A chunk stays alive while any of
// its rows does; rows live as long as their batch, and the batches of a
// source are handed on in order, so chunks are short-lived too. The zero
// RowArena is ready to use; a RowArena is not safe for concurrent use.
type RowArena struct {
	rows []Row
}

// rowArenaChunk is how many rows a RowArena allocates at once.
const rowArenaChunk = 128

// NewRow returns a row of shape s with every value nil, as NewRow does.
func (a *RowArena) NewRow(s *Shape) *Row {
	if len(a.rows) == cap(a.rows) {
		a.rows = make([]Row, 0, rowArenaChunk)
	}
	a.rows = a.rows[:len(a.rows)+1]
	r := &a.rows[len(a.rows)-1]
	r.shape = s
	r.vals = r.slots(len(s.names))
	return r
}

func (r *Row) slots(n int) []any {
	if n <= rowInline {
		return r.inline[:n]
	}
	return make([]any, n)
}

// Shape returns the row's shape.
func (r *Row) Shape() *Shape { return r.shape }

// Vals returns the row's values, in the order of its shape's names; the
// caller may set them.
func (r *Row) Vals() []any { return r.vals }

// Get returns the value of field name.
func (r *Row) Get(name string) (any, bool) {
	if i := r.shape.Index(name); i >= 0 {
		return r.vals[i], true
	}
	return nil, false
}

// Reshape gives the row shape s and returns its values to set, in s's
// order. Values at positions below both the former and the new length,
// and those at higher positions within cap(r.Vals()) that the caller set
// before, are kept; values past the new length are dropped.
func (r *Row) Reshape(s *Shape) []any {
	r.shape = s
	if n := len(s.names); n <= cap(r.vals) {
		clear(r.vals[min(n, len(r.vals)):])
		r.vals = r.vals[:n]
	} else {
		r.vals = r.slots(n)
	}
	return r.vals
}

// Map returns the row as the map[string]any it stands for.
func (r *Row) Map() map[string]any {
	m := make(map[string]any, len(r.vals))
	for i, name := range r.shape.names {
		m[name] = r.vals[i]
	}
	return m
}

// Materialize returns v, or the map a Row stands for.
func Materialize(v any) any {
	if r, ok := v.(*Row); ok {
		return r.Map()
	}
	return v
}

// MaterializeBatch replaces every Row value of b by its map.
func MaterializeBatch(b []Record) {
	for i := range b {
		if r, ok := b[i].Value.(*Row); ok {
			b[i].Value = r.Map()
		}
	}
}

// Shape is the field names of rows, in order. Shapes are interned: the
// same names in the same order give the same *Shape, so code that handles
// rows can remember what it worked out for a shape by its pointer.
type Shape struct {
	names []string
	index map[string]int // for shapes wider than shapeScan
}

// shapeScan is the widest shape whose names Index compares one by one.
const shapeScan = 16

var shapes sync.Map // shapeKey(names) -> *Shape

// shapeKey encodes names unambiguously: each is preceded by its length.
func shapeKey(names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(strconv.Itoa(len(n)))
		b.WriteByte(':')
		b.WriteString(n)
	}
	return b.String()
}

// NewShape returns the shape of the given field names, which must be
// distinct. Shapes are never freed: a program makes a few, one per layout
// of the records it builds.
func NewShape(names ...string) *Shape {
	key := shapeKey(names)
	if s, ok := shapes.Load(key); ok {
		return s.(*Shape)
	}
	s := &Shape{names: append([]string(nil), names...)}
	if len(names) > shapeScan {
		s.index = make(map[string]int, len(names))
		for i, n := range names {
			s.index[n] = i
		}
	}
	actual, _ := shapes.LoadOrStore(key, s)
	return actual.(*Shape)
}

// Len returns the number of fields.
func (s *Shape) Len() int { return len(s.names) }

// Names returns the field names; the caller must not change them.
func (s *Shape) Names() []string { return s.names }

// Index returns the position of field name, or -1.
func (s *Shape) Index(name string) int {
	if s.index != nil {
		if i, ok := s.index[name]; ok {
			return i
		}
		return -1
	}
	for i, n := range s.names {
		if n == name {
			return i
		}
	}
	return -1
}
