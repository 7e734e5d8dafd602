package codec

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/lang/types"
)

// coerceRecord converts the values of m in place to the representation of
// record type t: it checks required fields, converts values and drops
// fields t does not declare. path prefixes field names in errors.
func coerceRecord(m map[string]any, t *types.Type, path string) error {
	present := 0
	for _, f := range t.Fields {
		v, ok := m[f.Name]
		if ok {
			present++
		}
		if !ok || v == nil {
			if f.Type.Optional || f.Type.Kind == types.Any {
				continue
			}
			if !ok {
				return fmt.Errorf("field %q is missing", path+f.Name)
			}
			return fmt.Errorf("field %q is null", path+f.Name)
		}
		name := f.Name // the field's path, for errors
		if path != "" {
			name = path + f.Name
		}
		cv, err := coerce(v, f.Type, name)
		if err != nil {
			return err
		}
		m[f.Name] = cv
	}
	if present < len(m) {
		for k := range m {
			if t.Field(k) == nil {
				delete(m, k)
			}
		}
	}
	return nil
}

// CoerceRecord converts the values of a decoded message m in place to
// the representation of record type t, as a typed codec's Decode does.
func CoerceRecord(m map[string]any, t *types.Type) error { return coerceRecord(m, t, "") }

// Coerce converts a decoded value to the representation of t; name is used
// in errors ("field %q: ...").
func Coerce(v any, t *types.Type, name string) (any, error) { return coerce(v, t, name) }

func coerce(v any, t *types.Type, path string) (any, error) {
	if v == nil {
		if t.Optional || t.Kind == types.Any {
			return nil, nil
		}
		return nil, fmt.Errorf("field %q is null", path)
	}
	switch t.Kind {
	case types.Any:
		return v, nil
	// A value that already has the representation is returned as it is:
	// boxing it again would allocate.
	case types.String:
		if _, ok := v.(string); ok {
			return v, nil
		}
	case types.Int:
		switch n := v.(type) {
		case int64:
			return v, nil
		case float64:
			if n == math.Trunc(n) && math.Abs(n) < 1<<63 {
				return int64(n), nil
			}
			return nil, fmt.Errorf("field %q: want int, got %v", path, n)
		}
	case types.Float:
		switch n := v.(type) {
		case float64:
			return v, nil
		case int64:
			return float64(n), nil
		}
	case types.Bool:
		if _, ok := v.(bool); ok {
			return v, nil
		}
	case types.Timestamp:
		switch s := v.(type) {
		case string:
			ts, err := parseTimestamp(s, path)
			if err != nil {
				return nil, err
			}
			return ts, nil
		case time.Time:
			return v, nil
		}
	case types.Bytes:
		switch s := v.(type) {
		case string:
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("field %q: want base64 bytes: %v", path, err)
			}
			return b, nil
		case []byte:
			return v, nil
		}
	case types.List:
		if l, ok := v.([]any); ok {
			for i, e := range l {
				ce, err := coerce(e, t.Elem, path+"["+strconv.Itoa(i)+"]")
				if err != nil {
					return nil, err
				}
				l[i] = ce
			}
			return l, nil
		}
	case types.Map:
		if m, ok := v.(map[string]any); ok {
			for k, e := range m {
				ce, err := coerce(e, t.Elem, path+"["+strconv.Quote(k)+"]")
				if err != nil {
					return nil, err
				}
				m[k] = ce
			}
			return m, nil
		}
	case types.Record:
		if m, ok := v.(map[string]any); ok {
			if err := coerceRecord(m, t, path+"."); err != nil {
				return nil, err
			}
			return m, nil
		}
	}
	return nil, fmt.Errorf("field %q: want %s, got %s", path, t.WithOptional(false), kindOf(v))
}

// Coerce is Coerce boxing a timestamp parsed from text in a, which spares
// an allocation per timestamp field.
func (a *Arena) Coerce(v any, t *types.Type, name string) (any, error) {
	if s, ok := v.(string); ok && t.Kind == types.Timestamp {
		ts, err := parseTimestamp(s, name)
		if err != nil {
			return nil, err
		}
		return a.Time(ts), nil
	}
	return coerce(v, t, name)
}

// parseTimestamp parses the RFC 3339 text s of the field path.
func parseTimestamp(s, path string) (time.Time, error) {
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %q: want an RFC 3339 timestamp, got %q", path, s)
	}
	return ts, nil
}

// kindOf names the JSON kind of a decoded value for messages.
func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// ParseText converts a text value (a CSV field, a Redis stream field) to
// the representation of t; name is used in errors.
func ParseText(s string, t *types.Type, name string) (any, error) {
	return parseText(s, t, name, false)
}

// parseText converts CSV text to the representation of t; keep keeps
// invalid UTF-8 in a JSON value (jsonDecoder.keep).
func parseText(s string, t *types.Type, path string, keep bool) (any, error) {
	if s == "" && t.Kind != types.String {
		if t.Optional || t.Kind == types.Any {
			return nil, nil
		}
		return nil, fmt.Errorf("field %q is empty", path)
	}
	switch t.Kind {
	case types.String, types.Any:
		return s, nil
	case types.Int:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("field %q: want int, got %q", path, s)
		}
		return n, nil
	case types.Float:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("field %q: want float, got %q", path, s)
		}
		return f, nil
	case types.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("field %q: want bool, got %q", path, s)
		}
		return b, nil
	case types.Timestamp, types.Bytes:
		return coerce(s, t, path)
	case types.List, types.Map, types.Record:
		m, err := decodeValue(s, keep)
		if err != nil {
			return nil, fmt.Errorf("field %q: want %s as json: %w", path, t.WithOptional(false), err)
		}
		return coerce(m, t, path)
	}
	return nil, fmt.Errorf("field %q: unsupported type %s", path, t)
}

// decodeValue parses any JSON value held in s; keep is jsonDecoder.keep.
func decodeValue(s string, keep bool) (any, error) {
	d := jsonDecoder{s: s, a: new(Arena), keep: keep}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.i < len(d.s) {
		return nil, d.errorf("unexpected %q after the value", d.s[d.i])
	}
	return v, nil
}
