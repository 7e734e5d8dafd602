package avro

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
)

// Decode decodes one Avro binary value written with schema writer into the
// pipe value of type t (the pipeline's declared type, nil for values as
// TypeOf(writer) maps them), resolving the writer's schema against t:
// fields t lacks are skipped, optional fields the writer lacks are null,
// int and long read as float where t wants a float, string and bytes as
// each other. Logical types read as TypeOf says (decimal as its exact
// text). Use Resolvable first to learn, once per writer schema, whether
// every record will resolve.
func Decode(writer havro.Schema, t *types.Type, b []byte) (map[string]any, error) {
	d := decoder{b: b}
	v, err := d.value(writer, t)
	if err != nil {
		return nil, err
	}
	if d.i != len(d.b) {
		return nil, fmt.Errorf("%d bytes after the value", len(d.b)-d.i)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the value is not a record")
	}
	return m, nil
}

// Resolvable reports whether values written with writer decode to type t;
// the error names the field that does not.
func Resolvable(writer havro.Schema, t *types.Type) error {
	return resolvable(writer, t, "")
}

func resolvable(w havro.Schema, t *types.Type, path string) error {
	if t == nil || t.Kind == types.Any {
		return nil
	}
	w = derefSchema(w)
	bad := func() error {
		return fmt.Errorf("field %s: the writer's %s does not read as %s", strings.TrimPrefix(path, "."), schemaKind(w), t.WithOptional(false))
	}
	if u, ok := w.(*havro.UnionSchema); ok {
		for _, b := range u.Types() {
			if b.Type() == havro.Null {
				if !t.Optional {
					return fmt.Errorf("field %s: the writer's schema allows null where a required %s is declared", strings.TrimPrefix(path, "."), t)
				}
				continue
			}
			if err := resolvable(b, t, path); err != nil {
				return err
			}
		}
		return nil
	}
	want, err := TypeOf(w)
	if w.Type() == havro.Record {
		wr := w.(*havro.RecordSchema)
		if t.Kind != types.Record {
			return bad()
		}
		for _, f := range t.Fields {
			wf := fieldNamed(wr, f.Name)
			if wf == nil {
				if !f.Type.Optional {
					return fmt.Errorf("field %s: the writer's schema lacks it and it is required", strings.TrimPrefix(path+"."+f.Name, "."))
				}
				continue
			}
			if err := resolvable(wf.Type(), f.Type, path+"."+f.Name); err != nil {
				return err
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case want.Kind == t.Kind && (t.Kind == types.List || t.Kind == types.Map):
		var inner havro.Schema
		if a, ok := w.(*havro.ArraySchema); ok {
			inner = a.Items()
		} else {
			inner = w.(*havro.MapSchema).Values()
		}
		return resolvable(inner, t.Elem, path+"[]")
	case want.Kind == t.Kind:
		return nil
	case t.Kind == types.Float && want.Kind == types.Int && !isLogical(w):
		return nil
	case (t.Kind == types.String && want.Kind == types.Bytes || t.Kind == types.Bytes && want.Kind == types.String) && !isLogical(w):
		return nil
	}
	return bad()
}

func isLogical(s havro.Schema) bool {
	lt, ok := s.(havro.LogicalTypeSchema)
	return ok && lt.Logical() != nil
}

func schemaKind(s havro.Schema) string {
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		return string(lt.Logical().Type())
	}
	return string(s.Type())
}

func derefSchema(s havro.Schema) havro.Schema {
	if r, ok := s.(*havro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func fieldNamed(r *havro.RecordSchema, name string) *havro.Field {
	for _, f := range r.Fields() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}

// fieldError is an error inside a field; the levels above add their names
// as it returns through them, so a path costs nothing until it is needed.
type fieldError struct {
	path []string // outermost first; list indexes as "[i]"
	err  error
}

func (e *fieldError) Error() string {
	var b strings.Builder
	for i, p := range e.path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return "field " + b.String() + ": " + e.err.Error()
}

func (e *fieldError) Unwrap() error { return e.err }

// inField returns err as an error inside field name.
func inField(name string, err error) error {
	if fe, ok := err.(*fieldError); ok {
		fe.path = append([]string{name}, fe.path...)
		return fe
	}
	return &fieldError{path: []string{name}, err: err}
}

type decoder struct {
	b []byte
	i int
}

var errShort = errors.New("the value ends early")

func (d *decoder) long() (int64, error) {
	u, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		return 0, errShort
	}
	d.i += n
	return int64(u>>1) ^ -int64(u&1), nil
}

// block reads the count of the next block of an array or map (0: the
// end); a negative count is followed by the block's size in bytes.
func (d *decoder) block() (int64, error) {
	n, err := d.long()
	if err != nil || n >= 0 {
		return n, err
	}
	_, err = d.long()
	return -n, err
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.long()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(len(d.b)-d.i) {
		return nil, errShort
	}
	b := d.b[d.i : d.i+int(n)]
	d.i += int(n)
	return b, nil
}

func (d *decoder) fixed(n int) ([]byte, error) {
	if n > len(d.b)-d.i {
		return nil, errShort
	}
	b := d.b[d.i : d.i+n]
	d.i += n
	return b, nil
}

// value decodes a value of schema s as pipe type t (nil: as s maps).
func (d *decoder) value(s havro.Schema, t *types.Type) (any, error) {
	s = derefSchema(s)
	if t != nil && t.Kind == types.Any {
		t = nil
	}
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		return d.logical(s, lt.Logical(), t)
	}
	switch s := s.(type) {
	case *havro.RecordSchema:
		m := make(map[string]any, len(s.Fields()))
		for _, f := range s.Fields() {
			var ft *types.Type
			if t != nil {
				ft = fieldType(t, f.Name())
				if ft == nil {
					if err := d.skip(f.Type()); err != nil {
						return nil, err
					}
					continue
				}
			}
			v, err := d.value(f.Type(), ft)
			if err != nil {
				return nil, inField(f.Name(), err)
			}
			m[f.Name()] = v
		}
		if t != nil {
			for _, f := range t.Fields {
				if _, ok := m[f.Name]; !ok {
					if !f.Type.Optional {
						return nil, inField(f.Name, errors.New("the writer's schema lacks it and it is required"))
					}
					m[f.Name] = nil
				}
			}
		}
		return m, nil
	case *havro.UnionSchema:
		n, err := d.long()
		if err != nil {
			return nil, err
		}
		if n < 0 || int(n) >= len(s.Types()) {
			return nil, fmt.Errorf("union branch %d out of range", n)
		}
		return d.value(s.Types()[n], t)
	case *havro.EnumSchema:
		n, err := d.long()
		if err != nil {
			return nil, err
		}
		if n < 0 || int(n) >= len(s.Symbols()) {
			return nil, fmt.Errorf("enum symbol %d out of range", n)
		}
		return s.Symbols()[n], nil
	case *havro.FixedSchema:
		b, err := d.fixed(s.Size())
		return clone(b), err
	case *havro.ArraySchema:
		var et *types.Type
		if t != nil {
			et = t.Elem
		}
		out := []any{}
		for {
			n, err := d.block()
			if err != nil || n == 0 {
				return out, err
			}
			for range n {
				v, err := d.value(s.Items(), et)
				if err != nil {
					return nil, inField("[]", err)
				}
				out = append(out, v)
			}
		}
	case *havro.MapSchema:
		var et *types.Type
		if t != nil {
			et = t.Elem
		}
		out := map[string]any{}
		for {
			n, err := d.block()
			if err != nil || n == 0 {
				return out, err
			}
			for range n {
				k, err := d.bytes()
				if err != nil {
					return nil, err
				}
				v, err := d.value(s.Values(), et)
				if err != nil {
					return nil, inField(string(k), err)
				}
				out[string(k)] = v
			}
		}
	case *havro.PrimitiveSchema:
		return d.primitive(s.Type(), t)
	case *havro.NullSchema:
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported Avro type %s", s.Type())
}

func fieldType(t *types.Type, name string) *types.Type {
	for _, f := range t.Fields {
		if f.Name == name {
			return f.Type
		}
	}
	return nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (d *decoder) primitive(k havro.Type, t *types.Type) (any, error) {
	wantFloat := t != nil && t.Kind == types.Float
	switch k {
	case havro.Null:
		return nil, nil
	case havro.Boolean:
		if d.i >= len(d.b) {
			return nil, errShort
		}
		d.i++
		return d.b[d.i-1] != 0, nil
	case havro.Int, havro.Long:
		n, err := d.long()
		if wantFloat {
			return float64(n), err
		}
		return n, err
	case havro.Float:
		b, err := d.fixed(4)
		if err != nil {
			return nil, err
		}
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), nil
	case havro.Double:
		b, err := d.fixed(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
	case havro.String:
		b, err := d.bytes()
		if t != nil && t.Kind == types.Bytes {
			return clone(b), err
		}
		return string(b), err
	case havro.Bytes:
		b, err := d.bytes()
		if t != nil && t.Kind == types.String {
			return string(b), err
		}
		return clone(b), err
	}
	return nil, fmt.Errorf("unsupported Avro type %s", k)
}

func (d *decoder) logical(s havro.Schema, l havro.LogicalSchema, t *types.Type) (any, error) {
	var raw []byte
	var n int64
	var err error
	switch s.Type() {
	case havro.Int, havro.Long:
		n, err = d.long()
	case havro.Bytes, havro.String:
		raw, err = d.bytes()
	case havro.Fixed:
		raw, err = d.fixed(s.(*havro.FixedSchema).Size())
	default:
		return d.primitive(s.Type(), t)
	}
	if err != nil {
		return nil, err
	}
	switch l.Type() {
	case havro.Decimal:
		dl := l.(*havro.DecimalLogicalSchema)
		return decimalText(raw, dl.Scale()), nil
	case havro.UUID:
		return string(raw), nil
	case havro.Date:
		return time.Unix(n*86400, 0).UTC(), nil
	case havro.TimestampMillis, havro.LocalTimestampMillis:
		return time.UnixMilli(n).UTC(), nil
	case havro.TimestampMicros, havro.LocalTimestampMicros:
		return time.UnixMicro(n).UTC(), nil
	case havro.TimeMillis, havro.TimeMicros:
		return n, nil
	case havro.Duration:
		return clone(raw), nil
	}
	if raw != nil {
		if s.Type() == havro.String {
			return string(raw), nil
		}
		return clone(raw), nil
	}
	return n, nil
}

// decimalText renders a two's-complement big-endian unscaled integer with
// scale digits after the point.
func decimalText(b []byte, scale int) string {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	s := n.String()
	if scale <= 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for len(s) <= scale {
		s = "0" + s
	}
	s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	if neg {
		s = "-" + s
	}
	return s
}

// skip reads past a value of schema s.
func (d *decoder) skip(s havro.Schema) error {
	_, err := d.value(s, nil)
	return err
}

// Encoder encodes pipe values with one Avro schema (the writer's).
type Encoder struct{ s havro.Schema }

// NewEncoder returns an encoder writing with schema s.
func NewEncoder(s havro.Schema) *Encoder { return &Encoder{s: s} }

// Schema returns the schema the encoder writes.
func (e *Encoder) Schema() havro.Schema { return e.s }

// Append appends the Avro binary encoding of record v to dst: a field v
// lacks takes the schema's default (null for an optional field);
// timestamps, dates and times convert to their logical types; a decimal
// takes its exact text (or a number); a uuid its text.
func (e *Encoder) Append(dst []byte, v map[string]any) ([]byte, error) {
	return encode(dst, e.s, v)
}

// AppendValue is Append for a value of any schema (a message key).
func (e *Encoder) AppendValue(dst []byte, v any) ([]byte, error) {
	return encode(dst, e.s, v)
}

func encode(dst []byte, s havro.Schema, v any) ([]byte, error) {
	s = derefSchema(s)
	if v == nil && s.Type() != havro.Union && s.Type() != havro.Null {
		return nil, fmt.Errorf("null for a required %s", s.Type())
	}
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		if b, ok, err := encodeLogical(dst, s, lt.Logical(), v); ok || err != nil {
			return b, err
		}
	}
	switch s := s.(type) {
	case *havro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want a record, got %T", v)
		}
		for _, f := range s.Fields() {
			fv, ok := m[f.Name()]
			if !ok && f.HasDefault() {
				fv = f.Default()
			}
			var err error
			if dst, err = encode(dst, f.Type(), fv); err != nil {
				return nil, inField(f.Name(), err)
			}
		}
		return dst, nil
	case *havro.UnionSchema:
		i := unionBranch(s, v)
		if i < 0 {
			if v == nil {
				return nil, fmt.Errorf("null for a field that cannot be null")
			}
			return nil, fmt.Errorf("no branch of the union takes a %T", v)
		}
		return encode(appendLong(dst, int64(i)), s.Types()[i], v)
	case *havro.EnumSchema:
		str, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want an enum symbol, got %T", v)
		}
		for i, sym := range s.Symbols() {
			if sym == str {
				return appendLong(dst, int64(i)), nil
			}
		}
		return nil, fmt.Errorf("%q is not a symbol of enum %s", str, s.FullName())
	case *havro.FixedSchema:
		b, ok := v.([]byte)
		if !ok || len(b) != s.Size() {
			return nil, fmt.Errorf("want %d bytes for fixed %s", s.Size(), s.FullName())
		}
		return append(dst, b...), nil
	case *havro.ArraySchema:
		l, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want a list, got %T", v)
		}
		if len(l) > 0 {
			dst = appendLong(dst, int64(len(l)))
			for i, e := range l {
				var err error
				if dst, err = encode(dst, s.Items(), e); err != nil {
					return nil, inField("["+strconv.Itoa(i)+"]", err)
				}
			}
		}
		return appendLong(dst, 0), nil
	case *havro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want a map, got %T", v)
		}
		if len(m) > 0 {
			dst = appendLong(dst, int64(len(m)))
			for k, e := range m {
				dst = append(appendLong(dst, int64(len(k))), k...)
				var err error
				if dst, err = encode(dst, s.Values(), e); err != nil {
					return nil, inField(k, err)
				}
			}
		}
		return appendLong(dst, 0), nil
	case *havro.PrimitiveSchema:
		return encodePrimitive(dst, s.Type(), v)
	case *havro.NullSchema:
		return encodePrimitive(dst, havro.Null, v)
	}
	return nil, fmt.Errorf("unsupported Avro type %s", s.Type())
}

func encodePrimitive(dst []byte, k havro.Type, v any) ([]byte, error) {
	bad := func() ([]byte, error) { return nil, fmt.Errorf("want %s, got %T", k, v) }
	switch k {
	case havro.Null:
		if v != nil {
			return bad()
		}
		return dst, nil
	case havro.Boolean:
		b, ok := v.(bool)
		if !ok {
			return bad()
		}
		if b {
			return append(dst, 1), nil
		}
		return append(dst, 0), nil
	case havro.Int, havro.Long:
		n, ok := toInt(v)
		if !ok {
			return bad()
		}
		if k == havro.Int && (n > math.MaxInt32 || n < math.MinInt32) {
			return nil, fmt.Errorf("%d does not fit an Avro int", n)
		}
		return appendLong(dst, n), nil
	case havro.Float, havro.Double:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		default:
			n, ok := toInt(v)
			if !ok {
				return bad()
			}
			f = float64(n)
		}
		if k == havro.Float {
			return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(f))), nil
		}
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f)), nil
	case havro.String, havro.Bytes:
		switch x := v.(type) {
		case string:
			return append(appendLong(dst, int64(len(x))), x...), nil
		case []byte:
			return append(appendLong(dst, int64(len(x))), x...), nil
		}
		return bad()
	}
	return bad()
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	}
	return 0, false
}

// encodeLogical encodes v as logical type l; ok is false when v is of the
// underlying type and should be encoded as such.
func encodeLogical(dst []byte, s havro.Schema, l havro.LogicalSchema, v any) ([]byte, bool, error) {
	switch l.Type() {
	case havro.Date, havro.TimestampMillis, havro.TimestampMicros, havro.LocalTimestampMillis, havro.LocalTimestampMicros:
		ts, ok := v.(time.Time)
		if !ok {
			return nil, false, nil
		}
		switch l.Type() {
		case havro.Date:
			return appendLong(dst, int64(math.Floor(float64(ts.Unix())/86400))), true, nil
		case havro.TimestampMillis, havro.LocalTimestampMillis:
			return appendLong(dst, ts.UnixMilli()), true, nil
		}
		return appendLong(dst, ts.UnixMicro()), true, nil
	case havro.TimeMillis, havro.TimeMicros:
		if d, ok := v.(time.Duration); ok {
			if l.Type() == havro.TimeMillis {
				return appendLong(dst, d.Milliseconds()), true, nil
			}
			return appendLong(dst, d.Microseconds()), true, nil
		}
	case havro.Decimal:
		dl := l.(*havro.DecimalLogicalSchema)
		var r *big.Rat
		switch x := v.(type) {
		case string:
			var ok bool
			if r, ok = new(big.Rat).SetString(x); !ok {
				return nil, true, fmt.Errorf("%q is not a decimal", x)
			}
		case float64:
			r = new(big.Rat).SetFloat64(x)
		case int64:
			r = new(big.Rat).SetInt64(x)
		case []byte:
			return nil, false, nil
		default:
			return nil, true, fmt.Errorf("want a decimal, got %T", v)
		}
		scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(dl.Scale())), nil)))
		if !scaled.IsInt() {
			return nil, true, fmt.Errorf("%s has more than %d digits after the point", r.FloatString(dl.Scale()+4), dl.Scale())
		}
		b := twosComplement(scaled.Num())
		if f, ok := s.(*havro.FixedSchema); ok {
			if len(b) > f.Size() {
				return nil, true, fmt.Errorf("decimal too large for fixed(%d)", f.Size())
			}
			pad := byte(0)
			if scaled.Num().Sign() < 0 {
				pad = 0xff
			}
			for range f.Size() - len(b) {
				dst = append(dst, pad)
			}
			return append(dst, b...), true, nil
		}
		return append(appendLong(dst, int64(len(b))), b...), true, nil
	}
	return nil, false, nil
}

// twosComplement returns the shortest big-endian two's-complement bytes of n.
func twosComplement(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	l := (n.BitLen() + 8) / 8
	m := new(big.Int).Add(n, new(big.Int).Lsh(big.NewInt(1), uint(8*l)))
	b := m.Bytes()
	for len(b) < l {
		b = append([]byte{0xff}, b...)
	}
	return b
}

// unionBranch returns the index of the branch of u that takes v, or -1.
func unionBranch(u *havro.UnionSchema, v any) int {
	for i, b := range u.Types() {
		b = derefSchema(b)
		if takes(b, v) {
			return i
		}
	}
	return -1
}

func takes(s havro.Schema, v any) bool {
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		switch lt.Logical().Type() {
		case havro.Date, havro.TimestampMillis, havro.TimestampMicros, havro.LocalTimestampMillis, havro.LocalTimestampMicros:
			_, ok := v.(time.Time)
			return ok
		case havro.Decimal:
			switch v.(type) {
			case string, float64, int64:
				return true
			}
			return false
		}
	}
	switch s.Type() {
	case havro.Null:
		return v == nil
	case havro.Boolean:
		_, ok := v.(bool)
		return ok
	case havro.Int, havro.Long:
		_, ok := toInt(v)
		return ok
	case havro.Float, havro.Double:
		switch v.(type) {
		case float64, float32, int64:
			return true
		}
		return false
	case havro.String, havro.Enum:
		_, ok := v.(string)
		return ok
	case havro.Bytes, havro.Fixed:
		_, ok := v.([]byte)
		return ok
	case havro.Array:
		_, ok := v.([]any)
		return ok
	case havro.Map, havro.Record:
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

// DecodeValue decodes one Avro binary value of any schema as TypeOf maps
// it (a message key's schema is often a string or a long).
func DecodeValue(s havro.Schema, b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(s, nil)
	if err == nil && d.i != len(d.b) {
		err = fmt.Errorf("%d bytes after the value", len(d.b)-d.i)
	}
	return v, err
}
