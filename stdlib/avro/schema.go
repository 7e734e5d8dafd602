package avro

import (
	"fmt"
	"strings"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
)

// ParseSchema parses the text of an Avro schema (an .avsc file). The
// schema must be a record: a pipe schema is a record type.
func ParseSchema(src []byte) (havro.Schema, error) {
	s, err := havro.ParseBytesWithCache(src, "", &havro.SchemaCache{})
	if err != nil {
		return nil, err
	}
	if s.Type() != havro.Record {
		return nil, fmt.Errorf("the schema is a %s, not a record", s.Type())
	}
	return s, nil
}

// TypeOf maps an Avro schema to the pipe type its values decode to:
//
//	record                      → record (fields in order)
//	enum                        → string
//	["null", T] (either order)  → T?
//	any other union             → any
//	array<T>, map<T>            → list<T>, map<string, T>
//	fixed, bytes, duration      → bytes
//	decimal                     → string (the exact decimal text)
//	date, timestamp-*, local-timestamp-* → timestamp
//	time-millis, time-micros    → int (milliseconds / microseconds since midnight)
//	uuid, string                → string
//	int, long → int; float, double → float; boolean → bool; null → any?
//
// A record that contains itself (through a named reference) is an error:
// pipe records are finite trees.
func TypeOf(s havro.Schema) (*types.Type, error) {
	return typeOf(s, nil)
}

func typeOf(s havro.Schema, open []string) (*types.Type, error) {
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		switch lt.Logical().Type() {
		case havro.Decimal, havro.UUID:
			return types.StringType, nil
		case havro.Date, havro.TimestampMillis, havro.TimestampMicros,
			havro.LocalTimestampMillis, havro.LocalTimestampMicros:
			return types.TimestampType, nil
		case havro.TimeMillis, havro.TimeMicros:
			return types.IntType, nil
		case havro.Duration:
			return types.BytesType, nil
		}
	}
	switch s := s.(type) {
	case *havro.RefSchema:
		for _, n := range open {
			if n == s.Schema().FullName() {
				return nil, fmt.Errorf("record %s contains itself: pipe records are finite", n)
			}
		}
		return typeOf(s.Schema(), open)
	case *havro.RecordSchema:
		open = append(open, s.FullName())
		t := &types.Type{Kind: types.Record}
		for _, f := range s.Fields() {
			ft, err := typeOf(f.Type(), open)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name(), err)
			}
			t.Fields = append(t.Fields, &types.Field{Name: f.Name(), Type: ft})
		}
		return t, nil
	case *havro.EnumSchema:
		return types.StringType, nil
	case *havro.FixedSchema:
		return types.BytesType, nil
	case *havro.ArraySchema:
		et, err := typeOf(s.Items(), open)
		if err != nil {
			return nil, err
		}
		return types.ListOf(et), nil
	case *havro.MapSchema:
		et, err := typeOf(s.Values(), open)
		if err != nil {
			return nil, err
		}
		return types.MapOf(et), nil
	case *havro.UnionSchema:
		var rest []havro.Schema
		for _, m := range s.Types() {
			if m.Type() != havro.Null {
				rest = append(rest, m)
			}
		}
		nullable := len(rest) < len(s.Types())
		if len(rest) != 1 {
			return types.AnyType.WithOptional(nullable), nil
		}
		et, err := typeOf(rest[0], open)
		if err != nil {
			return nil, err
		}
		return et.WithOptional(nullable), nil
	case *havro.PrimitiveSchema:
		switch s.Type() {
		case havro.String:
			return types.StringType, nil
		case havro.Bytes:
			return types.BytesType, nil
		case havro.Int, havro.Long:
			return types.IntType, nil
		case havro.Float, havro.Double:
			return types.FloatType, nil
		case havro.Boolean:
			return types.BoolType, nil
		case havro.Null:
			return types.AnyType.WithOptional(true), nil
		}
	}
	return nil, fmt.Errorf("unsupported Avro type %s", strings.TrimSpace(string(s.Type())))
}
