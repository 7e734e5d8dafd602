package avro

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"time"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
)

// Reader decodes the blocks of an Avro object container file into records
// of a pipe type: each record is decoded with the file's (writer) schema
// and resolved against the type by field name, as Avro schema resolution
// does: a field the type has and the file lacks is null (an error when the
// field is required), a field the file has and the type lacks is skipped,
// int and long promote to float, string and bytes to each other.
type Reader struct {
	writer  havro.Schema
	typ     *types.Type
	sync    [16]byte
	deflate bool
	// HeaderLen is the length of the file's header: the first block
	// starts there.
	HeaderLen int
}

// ParseHeader parses the header at the start of b. It returns a nil
// Reader and no error when b does not hold the whole header yet.
func ParseHeader(b []byte, t *types.Type) (*Reader, error) {
	if len(b) < 4 {
		return nil, nil
	}
	if !bytes.Equal(b[:4], []byte{'O', 'b', 'j', 1}) {
		return nil, errors.New("not an Avro object container file")
	}
	p := 4
	meta := map[string][]byte{}
	for {
		n, k := varlong(b[p:])
		if k == 0 {
			return nil, nil
		}
		p += k
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			_, k := varlong(b[p:])
			if k == 0 {
				return nil, nil
			}
			p += k
		}
		for range n {
			key, k := varbytes(b[p:])
			if k == 0 {
				return nil, nil
			}
			p += k
			val, k := varbytes(b[p:])
			if k == 0 {
				return nil, nil
			}
			p += k
			meta[string(key)] = val
		}
	}
	if len(b) < p+16 {
		return nil, nil
	}
	r := &Reader{typ: t, HeaderLen: p + 16}
	copy(r.sync[:], b[p:])
	switch c := string(meta["avro.codec"]); c {
	case "", "null":
	case "deflate":
		r.deflate = true
	default:
		return nil, fmt.Errorf("the file's codec is %q: null and deflate are read", c)
	}
	s, err := havro.ParseBytesWithCache(meta["avro.schema"], "", &havro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("the file's schema: %w", err)
	}
	r.writer = s
	return r, nil
}

// Block returns the number of records of the block at the start of b, and
// the block's length; n is 0 when b does not hold the whole block.
func (r *Reader) Block(b []byte) (count int64, n int) {
	count, k1 := varlong(b)
	if k1 == 0 {
		return 0, 0
	}
	size, k2 := varlong(b[k1:])
	if k2 == 0 || size < 0 || int64(len(b)-k1-k2) < size+16 {
		return 0, 0
	}
	return count, k1 + k2 + int(size) + 16
}

// BlockLen reads the two numbers that open a block, at the start of b:
// its records and its length, sync marker included.
func BlockLen(b []byte) (count, n int64, ok bool) {
	count, k1 := varlong(b)
	if k1 == 0 {
		return 0, 0, false
	}
	size, k2 := varlong(b[k1:])
	if k2 == 0 || size < 0 {
		return 0, 0, false
	}
	return count, int64(k1+k2) + size + 16, true
}

// Records decodes the records of a whole block b (as Block delimits it),
// calling fn with each record's index in the block and its value or
// error. A block that cannot be read at all is an error.
func (r *Reader) Records(b []byte, fn func(i int, v map[string]any, err error)) error {
	count, k1 := varlong(b)
	size, k2 := varlong(b[k1:])
	data := b[k1+k2 : k1+k2+int(size)]
	if !bytes.Equal(b[k1+k2+int(size):k1+k2+int(size)+16], r.sync[:]) {
		return errors.New("a block does not end with the file's sync marker")
	}
	if r.deflate {
		var err error
		if data, err = io.ReadAll(flate.NewReader(bytes.NewReader(data))); err != nil {
			return fmt.Errorf("inflating a block: %w", err)
		}
	}
	for i := range int(count) {
		v, rest, err := decode(data, r.writer, r.typ)
		if err != nil {
			// The rest of the block cannot be delimited: its records fail.
			for j := i; j < int(count); j++ {
				fn(j, nil, err)
			}
			return nil
		}
		data = rest
		m, _ := v.(map[string]any)
		fn(i, m, nil)
	}
	return nil
}

var errShort = errors.New("the data ends inside a value")

func varlong(b []byte) (int64, int) {
	u, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, 0
	}
	return int64(u>>1) ^ -int64(u&1), k
}

func varbytes(b []byte) ([]byte, int) {
	n, k := varlong(b)
	if k == 0 || n < 0 || int64(len(b)-k) < n {
		return nil, 0
	}
	return b[k : k+int(n)], k + int(n)
}

// decode decodes one value of writer schema s from b as pipe type t (nil:
// the value is skipped) and returns the rest of b.
func decode(b []byte, s havro.Schema, t *types.Type) (any, []byte, error) {
	if ref, ok := s.(*havro.RefSchema); ok {
		s = ref.Schema()
	}
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		var v any
		var rest []byte
		if fs, ok := s.(*havro.FixedSchema); ok {
			if len(b) < fs.Size() {
				return nil, nil, errShort
			}
			v, rest = bytes.Clone(b[:fs.Size()]), b[fs.Size():]
		} else {
			var err error
			if v, rest, err = decode(b, plain(s), nil); err != nil {
				return nil, nil, err
			}
		}
		switch lt.Logical().Type() {
		case havro.Decimal:
			ds := lt.Logical().(*havro.DecimalLogicalSchema)
			raw := v.([]byte)
			n := new(big.Int).SetBytes(raw)
			if len(raw) > 0 && raw[0]&0x80 != 0 {
				n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(raw)*8)))
			}
			return new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(ds.Scale())), nil)).FloatString(ds.Scale()), rest, nil
		case havro.Date:
			return time.Unix(v.(int64)*86400, 0).UTC(), rest, nil
		case havro.TimestampMillis, havro.LocalTimestampMillis:
			return time.UnixMilli(v.(int64)).UTC(), rest, nil
		case havro.TimestampMicros, havro.LocalTimestampMicros:
			return time.UnixMicro(v.(int64)).UTC(), rest, nil
		}
		return convert(v, t), rest, nil
	}
	switch s := s.(type) {
	case *havro.RecordSchema:
		var m map[string]any
		if t != nil {
			m = make(map[string]any, len(s.Fields()))
		}
		for _, f := range s.Fields() {
			var ft *types.Type
			switch {
			case t == nil:
			case t.Kind == types.Any:
				ft = types.AnyType
			default:
				if rf := fieldOf(t, f.Name()); rf != nil {
					ft = rf.Type
				}
			}
			v, rest, err := decode(b, f.Type(), ft)
			if err != nil {
				return nil, nil, fmt.Errorf("field %s: %w", f.Name(), err)
			}
			b = rest
			if ft != nil {
				m[f.Name()] = v
			}
		}
		if t != nil && t.Kind == types.Record {
			for _, f := range t.Fields {
				if _, ok := m[f.Name]; !ok {
					if !f.Type.Optional && f.Type.Kind != types.Any {
						return nil, nil, fmt.Errorf("field %s is not in the file's schema and is required", f.Name)
					}
					m[f.Name] = nil
				}
			}
		}
		return m, b, nil
	case *havro.EnumSchema:
		i, k := varlong(b)
		if k == 0 || i < 0 || int(i) >= len(s.Symbols()) {
			return nil, nil, errShort
		}
		return s.Symbols()[i], b[k:], nil
	case *havro.FixedSchema:
		if len(b) < s.Size() {
			return nil, nil, errShort
		}
		return bytes.Clone(b[:s.Size()]), b[s.Size():], nil
	case *havro.ArraySchema:
		var et *types.Type
		if t != nil && t.Kind == types.List {
			et = t.Elem
		}
		l := []any{}
		for {
			n, k := varlong(b)
			if k == 0 {
				return nil, nil, errShort
			}
			b = b[k:]
			if n == 0 {
				return l, b, nil
			}
			if n < 0 {
				n = -n
				if _, k = varlong(b); k == 0 {
					return nil, nil, errShort
				}
				b = b[k:]
			}
			for range n {
				v, rest, err := decode(b, s.Items(), orAny(et))
				if err != nil {
					return nil, nil, err
				}
				l, b = append(l, v), rest
			}
		}
	case *havro.MapSchema:
		var et *types.Type
		if t != nil && t.Kind == types.Map {
			et = t.Elem
		}
		m := map[string]any{}
		for {
			n, k := varlong(b)
			if k == 0 {
				return nil, nil, errShort
			}
			b = b[k:]
			if n == 0 {
				return m, b, nil
			}
			if n < 0 {
				n = -n
				if _, k = varlong(b); k == 0 {
					return nil, nil, errShort
				}
				b = b[k:]
			}
			for range n {
				key, k := varbytes(b)
				if k == 0 {
					return nil, nil, errShort
				}
				v, rest, err := decode(b[k:], s.Values(), orAny(et))
				if err != nil {
					return nil, nil, err
				}
				m[string(key)], b = v, rest
			}
		}
	case *havro.NullSchema:
		return nil, b, nil
	case *havro.UnionSchema:
		i, k := varlong(b)
		if k == 0 || i < 0 || int(i) >= len(s.Types()) {
			return nil, nil, errShort
		}
		return decode(b[k:], s.Types()[i], t)
	case *havro.PrimitiveSchema:
		var v any
		switch s.Type() {
		case havro.Null:
			return nil, b, nil
		case havro.Boolean:
			if len(b) < 1 {
				return nil, nil, errShort
			}
			v, b = b[0] != 0, b[1:]
		case havro.Int, havro.Long:
			n, k := varlong(b)
			if k == 0 {
				return nil, nil, errShort
			}
			v, b = n, b[k:]
		case havro.Float:
			if len(b) < 4 {
				return nil, nil, errShort
			}
			v, b = float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), b[4:]
		case havro.Double:
			if len(b) < 8 {
				return nil, nil, errShort
			}
			v, b = math.Float64frombits(binary.LittleEndian.Uint64(b)), b[8:]
		case havro.String, havro.Bytes:
			raw, k := varbytes(b)
			if k == 0 {
				return nil, nil, errShort
			}
			b = b[k:]
			if s.Type() == havro.String {
				v = string(raw)
			} else {
				v = bytes.Clone(raw)
			}
		default:
			return nil, nil, fmt.Errorf("unsupported Avro type %s", s.Type())
		}
		return convert(v, t), b, nil
	}
	return nil, nil, fmt.Errorf("unsupported Avro type %s", s.Type())
}

// plain returns the schema of a logical type's underlying primitive.
func plain(s havro.Schema) havro.Schema {
	if p, ok := s.(*havro.PrimitiveSchema); ok {
		return havro.NewPrimitiveSchema(p.Type(), nil)
	}
	return s
}

func orAny(t *types.Type) *types.Type {
	if t == nil {
		return types.AnyType
	}
	return t
}

// convert applies the promotions of schema resolution to a primitive
// value read for pipe type t.
func convert(v any, t *types.Type) any {
	if t == nil {
		return v
	}
	switch t.Kind {
	case types.Float:
		if n, ok := v.(int64); ok {
			return float64(n)
		}
	case types.String:
		if b, ok := v.([]byte); ok {
			return string(b)
		}
	case types.Bytes:
		if s, ok := v.(string); ok {
			return []byte(s)
		}
	}
	return v
}

func fieldOf(t *types.Type, name string) *types.Field {
	if t.Kind != types.Record {
		return nil
	}
	return t.Field(name)
}
