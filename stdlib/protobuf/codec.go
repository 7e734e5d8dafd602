package protobuf

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"pipe.dev/pipe/lang/types"
)

// Codec decodes the binary encoding of one message into a record value of
// the message's pipe type, and encodes such a value. Decode and Append take
// and produce the plain payload, with no framing.
type Codec struct {
	md protoreflect.MessageDescriptor
}

// NewCodec returns the codec of the message a type read by Compile
// describes.
func NewCodec(t *types.Type) (*Codec, error) {
	md, err := Descriptor(t)
	if err != nil {
		return nil, err
	}
	return &Codec{md: md}, nil
}

// Decode implements codec.Codec.
func (c *Codec) Decode(data []byte) (map[string]any, error) {
	m, err := decodeMessage(data, c.md)
	if err != nil {
		return nil, fmt.Errorf("protobuf %s: %w", c.md.FullName(), err)
	}
	return m, nil
}

// Append implements codec.Codec.
func (c *Codec) Append(dst []byte, v map[string]any) ([]byte, error) {
	return appendMessage(dst, c.md, v, "")
}

func messageValue(m protoreflect.Message) (map[string]any, error) {
	fields := m.Descriptor().Fields()
	out := make(map[string]any, fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := string(fd.Name())
		if fd.HasPresence() && !m.Has(fd) {
			out[name] = nil
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			mv := make(map[string]any, v.Map().Len())
			var err error
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				var x any
				x, err = singleValue(fd.MapValue(), e)
				mv[k.String()] = x
				return err == nil
			})
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", name, err)
			}
			out[name] = mv
		case fd.IsList():
			l := v.List()
			lv := make([]any, l.Len())
			for j := range l.Len() {
				x, err := singleValue(fd, l.Get(j))
				if err != nil {
					return nil, fmt.Errorf("field %s[%d]: %w", name, j, err)
				}
				lv[j] = x
			}
			out[name] = lv
		default:
			x, err := singleValue(fd, v)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", name, err)
			}
			out[name] = x
		}
	}
	return out, nil
}

func singleValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BytesKind:
		return v.Bytes(), nil
	case protoreflect.BoolKind:
		return v.Bool(), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float(), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return v.Int(), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return toInt(v.Uint())
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return nil, nil
		}
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return strconv.Itoa(int(v.Enum())), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return wellKnownValue(v.Message())
	}
	return nil, fmt.Errorf("unsupported kind %s", fd.Kind())
}

// wellKnownValue returns the value of a message: a well-known one as its
// pipe value, another as a record.
func wellKnownValue(m protoreflect.Message) (any, error) {
	md := m.Descriptor()
	f := md.Fields()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return time.Unix(m.Get(f.ByName("seconds")).Int(), m.Get(f.ByName("nanos")).Int()).UTC(), nil
	case "google.protobuf.Duration":
		return m.Get(f.ByName("seconds")).Int()*1e9 + m.Get(f.ByName("nanos")).Int(), nil
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		fd := f.ByName("value")
		return singleValue(fd, m.Get(fd))
	case "google.protobuf.Struct":
		fd := f.ByName("fields")
		mv := map[string]any{}
		var err error
		m.Get(fd).Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
			mv[k.String()], err = wellKnownValue(e.Message())
			return err == nil
		})
		return mv, err
	case "google.protobuf.ListValue":
		l := m.Get(f.ByName("values")).List()
		lv := make([]any, l.Len())
		for i := range l.Len() {
			x, err := wellKnownValue(l.Get(i).Message())
			if err != nil {
				return nil, err
			}
			lv[i] = x
		}
		return lv, nil
	case "google.protobuf.Value":
		o := m.WhichOneof(md.Oneofs().ByName("kind"))
		if o == nil {
			return nil, nil
		}
		return singleValue(o, m.Get(o))
	}
	return messageValue(m)
}

func setMessage(m protoreflect.Message, v map[string]any, path string) error {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		p := string(fd.Name())
		if path != "" {
			p = path + "." + p
		}
		x, ok := v[string(fd.Name())]
		if !ok || x == nil {
			continue
		}
		switch {
		case fd.IsMap():
			mx, ok := x.(map[string]any)
			if !ok {
				return fmt.Errorf("field %s: want a map, got %T", p, x)
			}
			mm := m.Mutable(fd).Map()
			for k, e := range mx {
				key, err := mapKey(fd.MapKey(), k)
				if err != nil {
					return fmt.Errorf("field %s: %w", p, err)
				}
				pv, err := protoValue(mm.NewValue, fd.MapValue(), e, p+"."+k)
				if err != nil {
					return err
				}
				mm.Set(key, pv)
			}
		case fd.IsList():
			lx, ok := x.([]any)
			if !ok {
				return fmt.Errorf("field %s: want a list, got %T", p, x)
			}
			l := m.Mutable(fd).List()
			for j, e := range lx {
				if e == nil {
					return fmt.Errorf("field %s[%d]: null in a repeated field", p, j)
				}
				pv, err := protoValue(l.NewElement, fd, e, fmt.Sprintf("%s[%d]", p, j))
				if err != nil {
					return err
				}
				l.Append(pv)
			}
		default:
			pv, err := protoValue(func() protoreflect.Value { return m.NewField(fd) }, fd, x, p)
			if err != nil {
				return err
			}
			m.Set(fd, pv)
		}
	}
	return nil
}

func mapKey(fd protoreflect.FieldDescriptor, k string) (protoreflect.MapKey, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(k).MapKey(), nil
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(k)
		return protoreflect.ValueOfBool(b).MapKey(), err
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(k, 10, 32)
		return protoreflect.ValueOfInt32(int32(n)).MapKey(), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(k, 10, 64)
		return protoreflect.ValueOfInt64(n).MapKey(), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(k, 10, 32)
		return protoreflect.ValueOfUint32(uint32(n)).MapKey(), err
	default:
		n, err := strconv.ParseUint(k, 10, 64)
		return protoreflect.ValueOfUint64(n).MapKey(), err
	}
}

var errType = errors.New("wrong type")

// protoValue converts x to the value of one element of fd; newMsg makes a
// message of fd's message type.
func protoValue(newMsg func() protoreflect.Value, fd protoreflect.FieldDescriptor, x any, path string) (protoreflect.Value, error) {
	bad := func() (protoreflect.Value, error) {
		return protoreflect.Value{}, fmt.Errorf("field %s: %w: %s cannot hold %T", path, errType, fd.Kind(), x)
	}
	toInt := func() (int64, bool) {
		switch n := x.(type) {
		case int64:
			return n, true
		case int:
			return int64(n), true
		case float64:
			if n == math.Trunc(n) && math.Abs(n) < 1<<63 {
				return int64(n), true
			}
		}
		return 0, false
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		if s, ok := x.(string); ok {
			return protoreflect.ValueOfString(s), nil
		}
	case protoreflect.BytesKind:
		if b, ok := x.([]byte); ok {
			return protoreflect.ValueOfBytes(b), nil
		}
	case protoreflect.BoolKind:
		if b, ok := x.(bool); ok {
			return protoreflect.ValueOfBool(b), nil
		}
	case protoreflect.FloatKind:
		switch n := x.(type) {
		case float64:
			return protoreflect.ValueOfFloat32(float32(n)), nil
		case int64:
			return protoreflect.ValueOfFloat32(float32(n)), nil
		}
	case protoreflect.DoubleKind:
		switch n := x.(type) {
		case float64:
			return protoreflect.ValueOfFloat64(n), nil
		case int64:
			return protoreflect.ValueOfFloat64(float64(n)), nil
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if n, ok := toInt(); ok {
			if n != int64(int32(n)) {
				return protoreflect.Value{}, fmt.Errorf("field %s: %d does not fit %s", path, n, fd.Kind())
			}
			return protoreflect.ValueOfInt32(int32(n)), nil
		}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if n, ok := toInt(); ok {
			return protoreflect.ValueOfInt64(n), nil
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if n, ok := toInt(); ok {
			if n < 0 || n > math.MaxUint32 {
				return protoreflect.Value{}, fmt.Errorf("field %s: %d does not fit %s", path, n, fd.Kind())
			}
			return protoreflect.ValueOfUint32(uint32(n)), nil
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if n, ok := toInt(); ok {
			if n < 0 {
				return protoreflect.Value{}, fmt.Errorf("field %s: %d does not fit %s", path, n, fd.Kind())
			}
			return protoreflect.ValueOfUint64(uint64(n)), nil
		}
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			return protoreflect.ValueOfEnum(0), nil
		}
		if s, ok := x.(string); ok {
			if ev := ed.Values().ByName(protoreflect.Name(s)); ev != nil {
				return protoreflect.ValueOfEnum(ev.Number()), nil
			}
			if n, err := strconv.Atoi(s); err == nil {
				return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
			}
			return protoreflect.Value{}, fmt.Errorf("field %s: %q is not a value of enum %s", path, s, ed.FullName())
		}
		if n, ok := toInt(); ok {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		mv := newMsg()
		if err := setWellKnown(mv.Message(), x, path); err != nil {
			return protoreflect.Value{}, err
		}
		return mv, nil
	}
	return bad()
}

// setWellKnown sets message m from x: a well-known message from its pipe
// value, another from a record.
func setWellKnown(m protoreflect.Message, x any, path string) error {
	md := m.Descriptor()
	f := md.Fields()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		t, ok := x.(time.Time)
		if !ok {
			return fmt.Errorf("field %s: want timestamp, got %T", path, x)
		}
		m.Set(f.ByName("seconds"), protoreflect.ValueOfInt64(t.Unix()))
		m.Set(f.ByName("nanos"), protoreflect.ValueOfInt32(int32(t.Nanosecond())))
		return nil
	case "google.protobuf.Duration":
		n, ok := x.(int64)
		if !ok {
			return fmt.Errorf("field %s: want int (nanoseconds), got %T", path, x)
		}
		m.Set(f.ByName("seconds"), protoreflect.ValueOfInt64(n/1e9))
		m.Set(f.ByName("nanos"), protoreflect.ValueOfInt32(int32(n%1e9)))
		return nil
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		fd := f.ByName("value")
		v, err := protoValue(nil, fd, x, path)
		if err != nil {
			return err
		}
		m.Set(fd, v)
		return nil
	case "google.protobuf.Struct":
		mx, ok := x.(map[string]any)
		if !ok {
			return fmt.Errorf("field %s: want a map, got %T", path, x)
		}
		fd := f.ByName("fields")
		mm := m.Mutable(fd).Map()
		for k, e := range mx {
			ev := mm.NewValue()
			if err := setWellKnown(ev.Message(), e, path+"."+k); err != nil {
				return err
			}
			mm.Set(protoreflect.ValueOfString(k).MapKey(), ev)
		}
		return nil
	case "google.protobuf.ListValue":
		lx, ok := x.([]any)
		if !ok {
			return fmt.Errorf("field %s: want a list, got %T", path, x)
		}
		l := m.Mutable(f.ByName("values")).List()
		for i, e := range lx {
			ev := l.NewElement()
			if err := setWellKnown(ev.Message(), e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
			l.Append(ev)
		}
		return nil
	case "google.protobuf.Value":
		return setValue(m, x, path)
	}
	r, ok := x.(map[string]any)
	if !ok {
		return fmt.Errorf("field %s: want a record, got %T", path, x)
	}
	return setMessage(m, r, path)
}

// setValue sets a google.protobuf.Value from any pipe value.
func setValue(m protoreflect.Message, x any, path string) error {
	f := m.Descriptor().Fields()
	switch v := x.(type) {
	case nil:
		m.Set(f.ByName("null_value"), protoreflect.ValueOfEnum(0))
	case bool:
		m.Set(f.ByName("bool_value"), protoreflect.ValueOfBool(v))
	case string:
		m.Set(f.ByName("string_value"), protoreflect.ValueOfString(v))
	case int64:
		m.Set(f.ByName("number_value"), protoreflect.ValueOfFloat64(float64(v)))
	case float64:
		m.Set(f.ByName("number_value"), protoreflect.ValueOfFloat64(v))
	case time.Time:
		m.Set(f.ByName("string_value"), protoreflect.ValueOfString(v.Format(time.RFC3339Nano)))
	case map[string]any:
		fd := f.ByName("struct_value")
		sv := m.NewField(fd)
		if err := setWellKnown(sv.Message(), v, path); err != nil {
			return err
		}
		m.Set(fd, sv)
	case []any:
		fd := f.ByName("list_value")
		lv := m.NewField(fd)
		if err := setWellKnown(lv.Message(), v, path); err != nil {
			return err
		}
		m.Set(fd, lv)
	default:
		return fmt.Errorf("field %s: %T has no google.protobuf.Value", path, x)
	}
	return nil
}
