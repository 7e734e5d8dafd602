package protobuf

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

var errWireType = errors.New("wrong wire type")

// decodeMessage decodes the wire encoding b of message md into a record:
// every field of md, absent ones at their default (null for a field with
// presence). It reads the wire directly rather than through dynamicpb; a
// singular field given twice takes its last value.
func decodeMessage(b []byte, md protoreflect.MessageDescriptor) (map[string]any, error) {
	fields := md.Fields()
	out := make(map[string]any, fields.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			out[string(fd.Name())] = map[string]any{}
		case fd.IsList():
			out[string(fd.Name())] = []any{}
		case fd.HasPresence():
			out[string(fd.Name())] = nil
		default:
			v, err := singleValue(fd, fd.Default())
			if err != nil {
				return nil, err
			}
			out[string(fd.Name())] = v
		}
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		fd := fields.ByNumber(num)
		if fd == nil {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		name := string(fd.Name())
		var err error
		switch {
		case fd.IsMap():
			if typ != protowire.BytesType {
				return nil, fmt.Errorf("field %s: %w", name, errWireType)
			}
			entry, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			e, err := decodeMessage(entry, fd.Message())
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", name, err)
			}
			out[name].(map[string]any)[fmt.Sprint(e["key"])] = e["value"]
		case fd.IsList() && typ == protowire.BytesType && packable(fd.Kind()):
			packed, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			l := out[name].([]any)
			for len(packed) > 0 {
				var v any
				if v, n, err = consumeValue(fd, wireTypeOf(fd.Kind()), packed); err != nil {
					return nil, fmt.Errorf("field %s: %w", name, err)
				}
				packed, l = packed[n:], append(l, v)
			}
			out[name] = l
		default:
			var v any
			if v, n, err = consumeValue(fd, typ, b); err != nil {
				return nil, fmt.Errorf("field %s: %w", name, err)
			}
			b = b[n:]
			if fd.IsList() {
				out[name] = append(out[name].([]any), v)
			} else {
				out[name] = v
			}
		}
	}
	return out, nil
}

func packable(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind, protoreflect.GroupKind:
		return false
	}
	return true
}

func wireTypeOf(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.VarintType
}

// consumeValue decodes one value of fd of wire type typ at the start of b
// and returns it and its length.
func consumeValue(fd protoreflect.FieldDescriptor, typ protowire.Type, b []byte) (any, int, error) {
	k := fd.Kind()
	if typ != wireTypeOf(k) {
		return nil, 0, errWireType
	}
	var u uint64
	var v []byte
	var n int
	switch typ {
	case protowire.VarintType:
		u, n = protowire.ConsumeVarint(b)
	case protowire.Fixed32Type:
		var u32 uint32
		u32, n = protowire.ConsumeFixed32(b)
		u = uint64(u32)
	case protowire.Fixed64Type:
		u, n = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		v, n = protowire.ConsumeBytes(b)
	default:
		return nil, 0, fmt.Errorf("%s fields are not read", k)
	}
	if n < 0 {
		return nil, 0, protowire.ParseError(n)
	}
	x, err := kindValue(fd, u, v)
	return x, n, err
}

// kindValue is the pipe value of field fd read from the wire as the number
// u (varint and fixed wire types) or the bytes v (length-delimited).
func kindValue(fd protoreflect.FieldDescriptor, u uint64, v []byte) (any, error) {
	switch k := fd.Kind(); k {
	case protoreflect.BoolKind:
		return u != 0, nil
	case protoreflect.Int32Kind, protoreflect.Sfixed32Kind:
		return int64(int32(u)), nil
	case protoreflect.Int64Kind, protoreflect.Sfixed64Kind:
		return int64(u), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return int64(uint32(u)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return toInt(u)
	case protoreflect.Sint32Kind:
		return int64(int32(protowire.DecodeZigZag(u & math.MaxUint32))), nil
	case protoreflect.Sint64Kind:
		return protowire.DecodeZigZag(u), nil
	case protoreflect.FloatKind:
		return float64(math.Float32frombits(uint32(u))), nil
	case protoreflect.DoubleKind:
		return math.Float64frombits(u), nil
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			return nil, nil
		}
		if ev := ed.Values().ByNumber(protoreflect.EnumNumber(int32(u))); ev != nil {
			return string(ev.Name()), nil
		}
		return strconv.Itoa(int(int32(u))), nil
	case protoreflect.StringKind:
		return string(v), nil
	case protoreflect.BytesKind:
		return append([]byte{}, v...), nil
	case protoreflect.MessageKind:
		return decodeSub(v, fd.Message())
	default:
		return nil, fmt.Errorf("%s fields are not read", k)
	}
}

// decodeSub decodes a message value: a well-known one as its pipe value,
// another as a record.
func decodeSub(b []byte, md protoreflect.MessageDescriptor) (any, error) {
	switch md.FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		m, err := decodeMessage(b, md)
		if err != nil {
			return nil, err
		}
		s, ns := m["seconds"].(int64), m["nanos"].(int64)
		if md.FullName() == "google.protobuf.Duration" {
			return s*1e9 + ns, nil
		}
		return time.Unix(s, ns).UTC(), nil
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		m, err := decodeMessage(b, md)
		if err != nil {
			return nil, err
		}
		return m["value"], nil
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		m := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(b, m); err != nil {
			return nil, err
		}
		return wellKnownValue(m)
	}
	return decodeMessage(b, md)
}

// toInt converts an unsigned 64-bit value to an int, which must hold it.
func toInt(u uint64) (any, error) {
	if u > math.MaxInt64 {
		return nil, fmt.Errorf("%d does not fit an int", u)
	}
	return int64(u), nil
}
