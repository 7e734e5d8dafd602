package protobuf

import (
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// appendMessage appends the wire encoding of record v as message md,
// fields in declaration order and map entries sorted by key, so that the
// same record always encodes the same. It works on the wire
// directly rather than through dynamicpb, which costs a message per
// record and reflection per field.
func appendMessage(dst []byte, md protoreflect.MessageDescriptor, v map[string]any, path string) ([]byte, error) {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		x, ok := v[string(fd.Name())]
		if !ok || x == nil {
			continue
		}
		p := string(fd.Name())
		if path != "" {
			p = path + "." + p
		}
		var err error
		switch {
		case fd.IsMap():
			mx, ok := x.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("field %s: want a map, got %T", p, x)
			}
			keys := make([]string, 0, len(mx))
			for k := range mx {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				key, err := mapKey(fd.MapKey(), k)
				if err != nil {
					return nil, fmt.Errorf("field %s: %w", p, err)
				}
				entry, err := appendScalar(nil, fd.MapKey(), key.Value(), false)
				if err != nil {
					return nil, err
				}
				if mx[k] != nil {
					if entry, err = appendField(entry, fd.MapValue(), mx[k], p+"."+k, false); err != nil {
						return nil, err
					}
				}
				dst = protowire.AppendTag(dst, fd.Number(), protowire.BytesType)
				dst = protowire.AppendBytes(dst, entry)
			}
		case fd.IsList():
			lx, ok := x.([]any)
			if !ok {
				return nil, fmt.Errorf("field %s: want a list, got %T", p, x)
			}
			if len(lx) == 0 {
				continue
			}
			if fd.IsPacked() {
				var packed []byte
				for j, e := range lx {
					pv, err := protoValue(nil, fd, e, fmt.Sprintf("%s[%d]", p, j))
					if err != nil {
						return nil, err
					}
					packed = appendRaw(packed, fd.Kind(), pv)
				}
				dst = protowire.AppendTag(dst, fd.Number(), protowire.BytesType)
				dst = protowire.AppendBytes(dst, packed)
				continue
			}
			for j, e := range lx {
				if e == nil {
					return nil, fmt.Errorf("field %s[%d]: null in a repeated field", p, j)
				}
				if dst, err = appendField(dst, fd, e, fmt.Sprintf("%s[%d]", p, j), false); err != nil {
					return nil, err
				}
			}
		default:
			if dst, err = appendField(dst, fd, x, p, !fd.HasPresence()); err != nil {
				return nil, err
			}
		}
	}
	return dst, nil
}

// appendField appends one value of fd with its tag; implicit: a zero
// value is left out (a proto3 field without presence).
func appendField(dst []byte, fd protoreflect.FieldDescriptor, x any, path string, implicit bool) ([]byte, error) {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		if fd.Kind() == protoreflect.GroupKind {
			return nil, fmt.Errorf("field %s: groups are not written", path)
		}
		body, err := appendSub(nil, fd.Message(), x, path)
		if err != nil {
			return nil, err
		}
		dst = protowire.AppendTag(dst, fd.Number(), protowire.BytesType)
		return protowire.AppendBytes(dst, body), nil
	}
	pv, err := protoValue(nil, fd, x, path)
	if err != nil {
		return nil, err
	}
	return appendScalar(dst, fd, pv, implicit)
}

// appendSub appends the body of message md from x: a well-known message
// from its pipe value, another from a record.
func appendSub(dst []byte, md protoreflect.MessageDescriptor, x any, path string) ([]byte, error) {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		t, ok := x.(time.Time)
		if !ok {
			return nil, fmt.Errorf("field %s: want timestamp, got %T", path, x)
		}
		return appendSecondsNanos(dst, t.Unix(), int64(t.Nanosecond())), nil
	case "google.protobuf.Duration":
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("field %s: want int (nanoseconds), got %T", path, x)
		}
		return appendSecondsNanos(dst, n/1e9, n%1e9), nil
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		return appendField(dst, md.Fields().ByName("value"), x, path, true)
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		m := dynamicpb.NewMessage(md)
		if err := setWellKnown(m, x, path); err != nil {
			return nil, err
		}
		return proto.MarshalOptions{Deterministic: true}.MarshalAppend(dst, m)
	}
	r, ok := x.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("field %s: want a record, got %T", path, x)
	}
	return appendMessage(dst, md, r, path)
}

func appendSecondsNanos(dst []byte, s, n int64) []byte {
	if s != 0 {
		dst = protowire.AppendTag(dst, 1, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(s))
	}
	if n != 0 {
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(int32(n))))
	}
	return dst
}

// appendScalar appends a scalar value of fd with its tag.
func appendScalar(dst []byte, fd protoreflect.FieldDescriptor, pv protoreflect.Value, implicit bool) ([]byte, error) {
	if implicit && zero(fd.Kind(), pv) {
		return dst, nil
	}
	var wt protowire.Type
	switch fd.Kind() {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		wt = protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		wt = protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind:
		wt = protowire.BytesType
	default:
		wt = protowire.VarintType
	}
	dst = protowire.AppendTag(dst, fd.Number(), wt)
	return appendRaw(dst, fd.Kind(), pv), nil
}

// appendRaw appends a scalar value without its tag.
func appendRaw(dst []byte, k protoreflect.Kind, pv protoreflect.Value) []byte {
	switch k {
	case protoreflect.BoolKind:
		return protowire.AppendVarint(dst, protowire.EncodeBool(pv.Bool()))
	case protoreflect.Int32Kind, protoreflect.Int64Kind:
		return protowire.AppendVarint(dst, uint64(pv.Int()))
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return protowire.AppendVarint(dst, protowire.EncodeZigZag(pv.Int()))
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		return protowire.AppendVarint(dst, pv.Uint())
	case protoreflect.EnumKind:
		return protowire.AppendVarint(dst, uint64(int64(pv.Enum())))
	case protoreflect.Fixed32Kind:
		return protowire.AppendFixed32(dst, uint32(pv.Uint()))
	case protoreflect.Sfixed32Kind:
		return protowire.AppendFixed32(dst, uint32(int32(pv.Int())))
	case protoreflect.Fixed64Kind:
		return protowire.AppendFixed64(dst, pv.Uint())
	case protoreflect.Sfixed64Kind:
		return protowire.AppendFixed64(dst, uint64(pv.Int()))
	case protoreflect.FloatKind:
		return protowire.AppendFixed32(dst, math.Float32bits(float32(pv.Float())))
	case protoreflect.DoubleKind:
		return protowire.AppendFixed64(dst, math.Float64bits(pv.Float()))
	case protoreflect.StringKind:
		return protowire.AppendString(dst, pv.String())
	case protoreflect.BytesKind:
		return protowire.AppendBytes(dst, pv.Bytes())
	}
	return dst
}

func zero(k protoreflect.Kind, pv protoreflect.Value) bool {
	switch k {
	case protoreflect.BoolKind:
		return !pv.Bool()
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
		protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
		return pv.Int() == 0
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return pv.Uint() == 0
	case protoreflect.EnumKind:
		return pv.Enum() == 0
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return math.Float64bits(pv.Float()) == 0
	case protoreflect.StringKind:
		return pv.String() == ""
	case protoreflect.BytesKind:
		return len(pv.Bytes()) == 0
	}
	return false
}
