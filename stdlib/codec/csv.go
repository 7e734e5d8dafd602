package codec

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/lang/types"
)

// csvCodec is the csv format: one row per message (a quoted field may not
// span lines), RFC 4180 quoting.
type csvCodec struct {
	schema *types.Type
	// declared are the columns of Options.Columns or the schema, or nil.
	declared []string
	// columns name the fields of a row: a header row's names, else the
	// declared columns; when encoding, the first record's keys if none
	// are declared.
	columns     []string
	comma       byte
	keepInvalid bool     // keep invalid UTF-8 (Options.KeepInvalidUTF8)
	fields      []string // scratch for Decode
}

func newCSV(schema *types.Type, opts Options) (*csvCodec, error) {
	c := &csvCodec{schema: schema, comma: opts.Comma, keepInvalid: opts.KeepInvalidUTF8}
	if c.comma == 0 {
		c.comma = ','
	}
	if c.comma == '"' || c.comma == '\n' || c.comma == '\r' {
		return nil, fmt.Errorf("codec: invalid csv delimiter %q", c.comma)
	}
	switch {
	case len(opts.Columns) > 0:
		c.declared = opts.Columns
	case schema != nil:
		for _, f := range schema.Fields {
			c.declared = append(c.declared, f.Name)
		}
	}
	c.columns = c.declared
	return c, nil
}

// utf8BOM is the byte-order mark some tools write before a header row.
var utf8BOM = []byte("\ufeff")

// headerNames splits a header row into distinct column names.
func (c *csvCodec) headerNames(line []byte) ([]string, error) {
	line = bytes.TrimPrefix(line, utf8BOM)
	if !c.keepInvalid {
		if err := checkUTF8(line); err != nil {
			return nil, err
		}
	}
	names, err := splitCSV(string(line), c.comma, nil)
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("column %q appears twice", n)
		}
	}
	return names, nil
}

// IsHeader implements HeaderCodec.
func (c *csvCodec) IsHeader(line []byte) bool {
	if c.declared == nil {
		return true
	}
	names, err := c.headerNames(line)
	if err != nil {
		return false
	}
	for _, n := range names {
		if !slices.Contains(c.declared, n) {
			return false
		}
	}
	return true
}

// DecodeHeader implements HeaderCodec.
func (c *csvCodec) DecodeHeader(line []byte) error {
	names, err := c.headerNames(line)
	if err != nil {
		return fmt.Errorf("csv header: %w", err)
	}
	if c.declared != nil {
		var unknown, missing []string
		for _, n := range names {
			if !slices.Contains(c.declared, n) {
				unknown = append(unknown, strconv.Quote(n))
			}
		}
		for _, n := range c.declared {
			if !slices.Contains(names, n) && c.required(n) {
				missing = append(missing, strconv.Quote(n))
			}
		}
		var problems []string
		if len(unknown) > 0 {
			problems = append(problems, "unknown "+plural(len(unknown), "column")+" "+strings.Join(unknown, ", "))
		}
		if len(missing) > 0 {
			problems = append(problems, "missing "+plural(len(missing), "column")+" "+strings.Join(missing, ", "))
		}
		if problems != nil {
			return fmt.Errorf("csv header does not match the declared columns (%s): %s",
				strings.Join(c.declared, ", "), strings.Join(problems, "; "))
		}
	}
	c.columns = names
	return nil
}

// required reports whether a header must name declared column n: all but
// the columns of optional and any fields must appear.
func (c *csvCodec) required(n string) bool {
	if c.schema == nil {
		return true
	}
	f := c.schema.Field(n)
	return f == nil || !f.Type.Optional && f.Type.Kind != types.Any
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// Decode implements Codec.
func (c *csvCodec) Decode(data []byte) (map[string]any, error) {
	if len(c.columns) == 0 {
		return nil, errors.New("csv: no columns: declare columns or a schema, or read a header row")
	}
	if !c.keepInvalid {
		if err := checkUTF8(data); err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
	}
	var err error
	c.fields, err = splitCSV(string(data), c.comma, c.fields[:0])
	if err != nil {
		return nil, err
	}
	if len(c.fields) != len(c.columns) {
		return nil, fmt.Errorf("csv: row has %d fields, want %d", len(c.fields), len(c.columns))
	}
	m := make(map[string]any, len(c.columns))
	for i, name := range c.columns {
		if c.schema == nil {
			m[name] = c.fields[i]
			continue
		}
		f := c.schema.Field(name)
		if f == nil {
			continue
		}
		v, err := parseText(c.fields[i], f.Type, name, c.keepInvalid)
		if err != nil {
			return nil, err
		}
		if v != nil {
			m[name] = v
		}
	}
	if c.schema != nil {
		for _, f := range c.schema.Fields {
			if _, ok := m[f.Name]; !ok && !f.Type.Optional && f.Type.Kind != types.Any {
				return nil, fmt.Errorf("field %q is missing", f.Name)
			}
		}
	}
	return m, nil
}

// splitCSV splits one row.
func splitCSV(s string, comma byte, out []string) ([]string, error) {
	for i := 0; ; {
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			j := i + 1
			for {
				k := strings.IndexByte(s[j:], '"')
				if k < 0 {
					return nil, fmt.Errorf("csv: column %d: unterminated quoted field", len(out)+1)
				}
				b.WriteString(s[j : j+k])
				j += k + 1
				if j < len(s) && s[j] == '"' {
					b.WriteByte('"')
					j++
					continue
				}
				break
			}
			out = append(out, b.String())
			if j == len(s) {
				return out, nil
			}
			if s[j] != comma {
				return nil, fmt.Errorf("csv: column %d: unexpected %q after a quoted field", len(out), s[j])
			}
			i = j + 1
			continue
		}
		k := strings.IndexByte(s[i:], comma)
		if k < 0 {
			f := s[i:]
			if strings.IndexByte(f, '"') >= 0 {
				return nil, fmt.Errorf("csv: column %d: bare \" in an unquoted field", len(out)+1)
			}
			return append(out, f), nil
		}
		f := s[i : i+k]
		if strings.IndexByte(f, '"') >= 0 {
			return nil, fmt.Errorf("csv: column %d: bare \" in an unquoted field", len(out)+1)
		}
		out = append(out, f)
		i += k + 1
	}
}

// AppendHeader implements HeaderCodec.
func (c *csvCodec) AppendHeader(dst []byte, first map[string]any) ([]byte, error) {
	c.fixColumns(first)
	for i, name := range c.columns {
		if i > 0 {
			dst = append(dst, c.comma)
		}
		dst = c.appendField(dst, name)
	}
	return dst, nil
}

func (c *csvCodec) fixColumns(m map[string]any) {
	if len(c.columns) == 0 {
		c.columns = sortedKeys(m)
	}
}

// Append implements Codec.
func (c *csvCodec) Append(dst []byte, v map[string]any) ([]byte, error) {
	c.fixColumns(v)
	for i, name := range c.columns {
		if i > 0 {
			dst = append(dst, c.comma)
		}
		var err error
		if dst, err = c.appendCell(dst, v[name]); err != nil {
			return dst, fmt.Errorf("field %q: %w", name, err)
		}
	}
	return dst, nil
}

func (c *csvCodec) appendCell(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return dst, nil
	case string:
		return c.appendField(dst, v), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case float64:
		return appendFloat(dst, v, 64)
	case bool:
		return strconv.AppendBool(dst, v), nil
	case time.Time:
		return v.AppendFormat(dst, time.RFC3339Nano), nil
	case []byte:
		return base64.StdEncoding.AppendEncode(dst, v), nil
	}
	b, err := appendValue(nil, v)
	if err != nil {
		return dst, err
	}
	return c.appendField(dst, string(b)), nil
}

func (c *csvCodec) appendField(dst []byte, s string) []byte {
	quote := s != "" && (s[0] == ' ' || s[len(s)-1] == ' ')
	for i := 0; i < len(s) && !quote; i++ {
		switch s[i] {
		case '"', '\n', '\r', c.comma:
			quote = true
		}
	}
	if !quote {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}
