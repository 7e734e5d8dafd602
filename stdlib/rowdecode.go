package stdlib

import (
	"fmt"
	"slices"
	"strings"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/codec"
)

// RowDecoder decodes messages into rows with one codec: records of a
// stream share their field names, so it keeps the shape of the last one.
// With a schema (a record type) it converts the values as the codec's
// typed Decode does (codec.CoerceRecord): the same values, the same
// errors, fields the schema does not declare dropped. A RowDecoder is not
// safe for concurrent use.
type RowDecoder struct {
	codec  codec.FieldsCodec
	schema *types.Type
	shape  *Shape
	keys   []string
	vals   []any
	// shapes counts the shapes made; past maxRowShapes the stream's
	// layouts vary too much to intern (shapes are never freed), and
	// every record becomes a map.
	shapes int
	rows   RowArena
	arena  codec.Arena
	// typed is how the last shape's columns meet the schema.
	typed *typedShape
}

// typedShape maps the schema's fields to the columns of a decoded shape.
type typedShape struct {
	shape *Shape
	// cols[i] is the column of the schema's field i, or -1.
	cols []int
	// out is the shape of the declared columns (in) of shape; nil when
	// every column is declared.
	out *Shape
	in  []int
}

const maxRowShapes = 64

// NewRowDecoder returns a decoder of messages with c into rows; schema,
// when not nil, is the record type their values are converted to.
func NewRowDecoder(c codec.FieldsCodec, schema *types.Type) *RowDecoder {
	return &RowDecoder{codec: c, schema: schema}
}

// Decode returns the message data as a *Row, or as the map it stands for
// when it names a field twice (the last value wins, as in a map). data
// must never change afterwards: strings may alias it.
func (rd *RowDecoder) Decode(data []byte) (any, error) {
	v, err := rd.decode(data)
	if err != nil || rd.schema == nil {
		return v, err
	}
	if m, ok := v.(map[string]any); ok {
		if err := codec.CoerceRecord(m, rd.schema); err != nil {
			return nil, err
		}
		return m, nil
	}
	return rd.coerce(v.(*Row))
}

func (rd *RowDecoder) decode(data []byte) (any, error) {
	var names []string
	var row *Row
	if rd.shape != nil && len(rd.shape.Names()) > 0 {
		// The message most likely has the fields of the one before: its
		// values go straight into a row of that shape.
		names = rd.shape.Names()
		row = rd.rows.NewRow(rd.shape)
		keys, vals, same, err := rd.codec.DecodeFieldsOwned(data, names, rd.keys[:0], row.Vals()[:0])
		rd.keys = keys
		if err != nil {
			clear(row.Vals())
			return nil, err
		}
		if same && len(vals) == len(names) && &vals[0] == &row.Vals()[0] {
			return row, nil
		}
		// Other fields: the row taken is left unused.
		defer clear(row.Vals()[:cap(row.Vals())])
		return rd.build(names, keys, vals, same)
	}
	keys, vals, same, err := rd.codec.DecodeFieldsOwned(data, names, rd.keys[:0], rd.vals[:0])
	rd.keys, rd.vals = keys, vals
	defer clear(vals) // drop the references the scratch slice holds
	if err != nil {
		return nil, err
	}
	return rd.build(names, keys, vals, same)
}

// build returns the message with the fields keys and values vals, those of
// a message with the fields names when same, as a row, or as a map when
// it names a field twice.
func (rd *RowDecoder) build(names, keys []string, vals []any, same bool) (any, error) {
	if rd.shape == nil || !same && !slices.Equal(names, keys) {
		if rd.shapes >= maxRowShapes || !distinct(keys) {
			m := make(map[string]any, len(keys))
			for i, k := range keys {
				m[k] = vals[i]
			}
			return m, nil
		}
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = strings.Clone(k) // keys alias the message; a shape lives on
		}
		rd.shape = NewShape(names...)
		rd.shapes++
	}
	row := rd.rows.NewRow(rd.shape)
	copy(row.Vals(), vals)
	return row, nil
}

// coerce converts row's values in place to the schema's, checking its
// fields in the schema's order as codec.CoerceRecord does, and returns it,
// or a row of its declared fields alone when it has others.
func (rd *RowDecoder) coerce(row *Row) (any, error) {
	ts := rd.typed
	if ts == nil || ts.shape != row.Shape() {
		ts = rd.typedShape(row.Shape())
	}
	vals := row.Vals()
	for i := range rd.schema.Fields {
		f := rd.schema.Fields[i]
		c := ts.cols[i]
		if c < 0 || vals[c] == nil {
			if f.Type.Optional || f.Type.Kind == types.Any {
				continue
			}
			if c < 0 {
				return nil, fmt.Errorf("field %q is missing", f.Name)
			}
			return nil, fmt.Errorf("field %q is null", f.Name)
		}
		v, err := rd.arena.Coerce(vals[c], f.Type, f.Name)
		if err != nil {
			return nil, err
		}
		vals[c] = v
	}
	if ts.out == nil {
		return row, nil
	}
	out := rd.rows.NewRow(ts.out)
	for j, c := range ts.in {
		out.Vals()[j] = vals[c]
	}
	clear(vals)
	return out, nil
}

// typedShape returns (and keeps) how shape's columns meet the schema.
func (rd *RowDecoder) typedShape(shape *Shape) *typedShape {
	ts := &typedShape{shape: shape, cols: make([]int, len(rd.schema.Fields))}
	for i, f := range rd.schema.Fields {
		ts.cols[i] = shape.Index(f.Name)
	}
	var names []string
	for c, n := range shape.Names() {
		if rd.schema.Field(n) != nil {
			ts.in = append(ts.in, c)
			names = append(names, n)
		}
	}
	if len(ts.in) < shape.Len() {
		ts.out = NewShape(names...)
	}
	rd.typed = ts
	return ts
}

// distinct reports whether no name appears twice in names.
func distinct(names []string) bool {
	if len(names) > 16 {
		seen := make(map[string]struct{}, len(names))
		for _, n := range names {
			seen[n] = struct{}{}
		}
		return len(seen) == len(names)
	}
	for i := 1; i < len(names); i++ {
		if slices.Contains(names[:i], names[i]) {
			return false
		}
	}
	return true
}
