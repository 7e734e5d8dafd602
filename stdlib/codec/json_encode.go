package codec

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"pipe.dev/pipe/lang/types"
)

// jsonCodec is the json format.
type jsonCodec struct {
	schema *types.Type
	// keys caches the sorted key order (with each key's encoded prefix) of
	// the last untyped record: records of one stream share their keys.
	keys []cachedKey
	// fields holds the schema's fields with their encoded prefixes.
	fields []cachedKey
	arena  Arena
	// fieldNames, fieldOrder and fieldPrefix cache AppendFields' sorted
	// order (and encoded prefixes) for the last names slice it was given.
	fieldNames  []string
	fieldOrder  []int
	fieldPrefix [][]byte
	// hint is the last names slice DecodeFieldsOwned was given, hintOK
	// whether its names can be matched as text.
	hint   []string
	hintOK bool
	// keepInvalid keeps invalid UTF-8 when decoding (Options.KeepInvalidUTF8).
	keepInvalid bool
}

type cachedKey struct {
	name   string
	prefix []byte // "name": (with the separating comma for all but the first)
	typ    *types.Type
}

func newJSON(schema *types.Type) *jsonCodec {
	c := &jsonCodec{schema: schema}
	if schema != nil {
		for i, f := range schema.Fields {
			c.fields = append(c.fields, cachedKey{name: f.Name, prefix: keyPrefix(f.Name, i > 0), typ: f.Type})
		}
	}
	return c
}

func keyPrefix(name string, comma bool) []byte {
	var b []byte
	if comma {
		b = append(b, ',')
	}
	b = appendString(b, name)
	return append(b, ':')
}

// Decode implements Codec.
func (c *jsonCodec) Decode(data []byte) (map[string]any, error) { return c.decode(data, false) }

// DecodeOwned implements OwnedDecoder.
func (c *jsonCodec) DecodeOwned(data []byte) (map[string]any, error) { return c.decode(data, true) }

func (c *jsonCodec) decode(data []byte, owned bool) (map[string]any, error) {
	m, err := decodeObject(data, &c.arena, owned, c.keepInvalid)
	if err != nil {
		return nil, err
	}
	if c.schema != nil {
		if err := coerceRecord(m, c.schema, ""); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Append implements Codec.
func (c *jsonCodec) Append(dst []byte, v map[string]any) ([]byte, error) {
	if c.schema != nil {
		return c.appendTyped(dst, v)
	}
	return c.appendUntyped(dst, v)
}

func (c *jsonCodec) appendUntyped(dst []byte, m map[string]any) ([]byte, error) {
	start := len(dst)
	if len(c.keys) == len(m) {
		// Optimistically encode in the cached order; a key that is not
		// there means another key set, so start again.
		dst = append(dst, '{')
		ok := true
		for i := range c.keys {
			k := &c.keys[i]
			v, found := m[k.name]
			if !found {
				ok = false
				break
			}
			dst = append(dst, k.prefix...)
			var err error
			if dst, err = appendValue(dst, v); err != nil {
				return dst, fmt.Errorf("field %q: %w", k.name, err)
			}
		}
		if ok {
			return append(dst, '}'), nil
		}
		dst = dst[:start]
	}
	c.keys = c.keys[:0]
	for _, k := range sortedKeys(m) {
		c.keys = append(c.keys, cachedKey{name: k, prefix: keyPrefix(k, len(c.keys) > 0)})
	}
	dst = append(dst, '{')
	for i := range c.keys {
		k := &c.keys[i]
		dst = append(dst, k.prefix...)
		var err error
		if dst, err = appendValue(dst, m[k.name]); err != nil {
			return dst, fmt.Errorf("field %q: %w", k.name, err)
		}
	}
	return append(dst, '}'), nil
}

// appendTyped writes m in the order of the type's fields, then the fields
// the type does not declare, sorted. An absent optional field stays absent
// (a pass-through pipeline writes what it read); a null one is null.
func (c *jsonCodec) appendTyped(dst []byte, m map[string]any) ([]byte, error) {
	dst = append(dst, '{')
	seen, written := 0, 0
	for i := range c.fields {
		f := &c.fields[i]
		v, ok := m[f.name]
		if !ok && f.typ.Optional {
			continue
		}
		// The prefix has the comma a field after the first needs.
		switch prefix := f.prefix; {
		case written == 0 && prefix[0] == ',':
			dst = append(dst, prefix[1:]...)
		case written > 0 && prefix[0] != ',':
			dst = append(append(dst, ','), prefix...)
		default:
			dst = append(dst, prefix...)
		}
		written++
		if ok {
			seen++
		}
		var err error
		if dst, err = appendValue(dst, v); err != nil {
			return dst, fmt.Errorf("field %q: %w", f.name, err)
		}
	}
	if seen < len(m) {
		// Fields the type does not declare follow, sorted.
		extra := make([]string, 0, len(m)-seen)
		for k := range m {
			if c.schema.Field(k) == nil {
				extra = append(extra, k)
			}
		}
		slices.Sort(extra)
		for _, k := range extra {
			if written > 0 {
				dst = append(dst, ',')
			}
			written++
			dst = appendString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendValue(dst, m[k]); err != nil {
				return dst, fmt.Errorf("field %q: %w", k, err)
			}
		}
	}
	return append(dst, '}'), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AppendJSON appends the JSON encoding of one value in the runtime
// representation of lang/types (maps with sorted keys).
func AppendJSON(dst []byte, v any) ([]byte, error) { return appendValue(dst, v) }

func appendValue(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, v), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case float64:
		return appendFloat(dst, v, 64)
	case bool:
		return strconv.AppendBool(dst, v), nil
	case time.Time:
		dst = append(dst, '"')
		dst = v.AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), nil
	case map[string]any:
		dst = append(dst, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendValue(dst, v[k]); err != nil {
				return dst, fmt.Errorf("key %q: %w", k, err)
			}
		}
		return append(dst, '}'), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, e); err != nil {
				return dst, fmt.Errorf("item %d: %w", i, err)
			}
		}
		return append(dst, ']'), nil
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v)
		return append(dst, '"'), nil
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case uint64:
		return strconv.AppendUint(dst, v, 10), nil
	case float32:
		return appendFloat(dst, float64(v), 32)
	case time.Duration:
		return appendString(dst, v.String()), nil
	case []string:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, e)
		}
		return append(dst, ']'), nil
	}
	return dst, fmt.Errorf("cannot encode a value of Go type %T", v)
}

// appendFloat formats like encoding/json: shortest round-trip digits,
// exponent form outside [1e-6, 1e21).
func appendFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, fmt.Errorf("cannot encode %v: not a finite number", f)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	if format == 'f' && bits == 64 {
		if b, ok := appendDecimal(dst, f); ok {
			return b, nil
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// appendDecimal appends f as strconv.AppendFloat(dst, f, 'f', -1, 64) does
// when f has a decimal form of at most 15 significant digits and 6
// decimals: two such decimals are never the same float64, so the one that
// converts back to f is the shortest. ok is false for other values.
func appendDecimal(dst []byte, f float64) ([]byte, bool) {
	if f == 0 || math.Abs(f) >= 1e15 {
		return dst, false
	}
	for d := 0; d <= 6; d++ {
		m := f * pow10[d]
		if m != math.Trunc(m) || m/pow10[d] != f {
			continue
		}
		if math.Abs(m) >= 1e15 {
			return dst, false
		}
		n := int64(m)
		if n < 0 {
			dst = append(dst, '-')
			n = -n
		}
		for d > 0 && n%10 == 0 {
			n /= 10
			d--
		}
		if d == 0 {
			return strconv.AppendInt(dst, n, 10), true
		}
		scale := int64(pow10[d])
		dst = strconv.AppendInt(dst, n/scale, 10)
		dst = append(dst, '.')
		frac := n % scale
		for z := scale / 10; z > frac && z > 1; z /= 10 {
			dst = append(dst, '0')
		}
		return strconv.AppendInt(dst, frac, 10), true
	}
	return dst, false
}

// safe[c] reports whether ASCII byte c needs no escaping in a JSON string.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start, i := 0, 0
	for i+8 <= len(s) {
		if m := stopBytes(loadWord(s, i)); m != 0 {
			i += bits.TrailingZeros64(m) >> 3 // the first byte to look at
			break
		}
		i += 8
	}
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
