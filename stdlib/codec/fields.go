package codec

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// FieldsCodec is implemented by a codec that can decode a message into
// its top-level field names and values, in the order the message has
// them, and encode a record given as names and values, without building
// a map[string]any either way: the file source and sink use it to hand
// the executor rows. Fields reports whether it can for this codec's
// options (the untyped JSON codec can; a typed one coerces through maps).
type FieldsCodec interface {
	Codec
	Fields() bool
	// DecodeFieldsOwned appends the message's field names and values to
	// keys and vals. A name may appear twice; strings alias data, which
	// the caller must never change afterwards. names are the field names
	// the message is expected to have, in order (those of the message
	// before); same reports that it has exactly those (false may still
	// mean it has, for names with characters JSON escapes). Callers pass the
	// same names slice for the same layout.
	DecodeFieldsOwned(data []byte, names, keys []string, vals []any) (_ []string, _ []any, same bool, _ error)
	// AppendFields appends the encoding of the record whose field names
	// are names (distinct) and values vals. Callers pass the same names
	// slice for the same layout, which lets the codec remember its order.
	AppendFields(dst []byte, names []string, vals []any) ([]byte, error)
}

// Fields implements FieldsCodec.
func (c *jsonCodec) Fields() bool { return c.schema == nil }

// DecodeFieldsOwned implements FieldsCodec.
func (c *jsonCodec) DecodeFieldsOwned(data []byte, names, keys []string, vals []any) ([]string, []any, bool, error) {
	if unsafe.SliceData(names) != unsafe.SliceData(c.hint) || len(names) != len(c.hint) {
		// A name is matched against the message's text as it is, which
		// holds it unless it has a character JSON escapes.
		c.hint, c.hintOK = names, true
		for _, n := range names {
			if strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' || r >= utf8.RuneSelf }) {
				c.hintOK = false
			}
		}
	}
	usable := c.hintOK
	if !usable {
		names = nil
	}
	d := jsonDecoder{a: &c.arena, keep: c.keepInvalid, names: names}
	if len(data) > 0 {
		d.s = unsafe.String(&data[0], len(data))
	}
	d.skipSpace()
	if d.i >= len(d.s) {
		return keys, vals, false, errors.New("json: empty message")
	}
	if d.s[d.i] != '{' {
		return keys, vals, false, fmt.Errorf("json: message is not an object (starts with %q)", d.s[d.i])
	}
	n := len(keys)
	keys, vals, err := d.fields(keys, vals)
	if err != nil {
		return keys, vals, false, err
	}
	d.skipSpace()
	if d.i < len(d.s) {
		return keys, vals, false, d.errorf("unexpected %q after the object", d.s[d.i])
	}
	return keys, vals, usable && d.named == len(names) && len(keys)-n == len(names), nil
}

// fields is object for the top-level object, appending to keys and vals.
func (d *jsonDecoder) fields(keys []string, vals []any) ([]string, []any, error) {
	more, err := d.open('}')
	for more && err == nil {
		d.skipSpace()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return keys, vals, d.errorf("expected a string key")
		}
		var k string
		if m := d.named; m < len(d.names) && m == len(keys) && d.hasName(d.names[m]) {
			k = d.names[m]
			d.i += len(k) + 2
			d.named++
			if d.i < len(d.s) && d.s[d.i] == ':' {
				d.i++
			} else {
				err = d.colon(k)
			}
		} else {
			k, err = d.key()
		}
		if err != nil {
			return keys, vals, err
		}
		var v any
		if v, err = d.value(); err != nil {
			return keys, vals, err
		}
		keys, vals = append(keys, k), append(vals, v)
		more, err = d.next('}', "object")
	}
	return keys, vals, err
}

// hasName reports whether the string at d.i (its opening quote) is name,
// which holds no character JSON escapes.
func (d *jsonDecoder) hasName(name string) bool {
	end := d.i + 1 + len(name)
	return end < len(d.s) && d.s[end] == '"' && d.s[d.i+1:end] == name
}

// AppendFields implements FieldsCodec: the fields in the order of their
// names, as Append writes the map they stand for.
func (c *jsonCodec) AppendFields(dst []byte, names []string, vals []any) ([]byte, error) {
	if len(names) == 0 || unsafe.SliceData(names) != unsafe.SliceData(c.fieldNames) || len(names) != len(c.fieldNames) {
		c.fieldNames = names
		c.fieldOrder = c.fieldOrder[:0]
		for i := range names {
			c.fieldOrder = append(c.fieldOrder, i)
		}
		slices.SortFunc(c.fieldOrder, func(a, b int) int {
			switch {
			case names[a] < names[b]:
				return -1
			case names[a] > names[b]:
				return 1
			}
			return 0
		})
		c.fieldPrefix = c.fieldPrefix[:0]
		for j, i := range c.fieldOrder {
			c.fieldPrefix = append(c.fieldPrefix, keyPrefix(names[i], j > 0))
		}
	}
	dst = append(dst, '{')
	for j, i := range c.fieldOrder {
		dst = append(dst, c.fieldPrefix[j]...)
		var err error
		if dst, err = appendValue(dst, vals[i]); err != nil {
			return dst, fmt.Errorf("field %q: %w", names[i], err)
		}
	}
	return append(dst, '}'), nil
}
