package codec

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/lang/types"
)

// csvCodec is the csv format: one row per message (a quoted field may not
// span lines), RFC 4180 quoting.
type csvCodec struct {
	schema   *types.Type
	columns  []string
	declared bool // columns came from Options or the schema
	header   bool
	comma    byte
	fields   []string // scratch for Decode
}

func newCSV(schema *types.Type, opts Options) (*csvCodec, error) {
	c := &csvCodec{schema: schema, header: opts.Header, comma: opts.Comma}
	if c.comma == 0 {
		c.comma = ','
	}
	if c.comma == '"' || c.comma == '\n' || c.comma == '\r' {
		return nil, fmt.Errorf("codec: invalid csv delimiter %q", c.comma)
	}
	switch {
	case len(opts.Columns) > 0:
		c.columns = opts.Columns
		c.declared = true
	case schema != nil:
		for _, f := range schema.Fields {
			c.columns = append(c.columns, f.Name)
		}
		c.declared = true
	}
	return c, nil
}

// DecodeHeader implements HeaderCodec. Declared columns take precedence
// over the header row, which is then only skipped.
func (c *csvCodec) DecodeHeader(line []byte) error {
	if c.declared {
		return nil
	}
	fields, err := splitCSV(string(line), c.comma, nil)
	if err != nil {
		return fmt.Errorf("csv header: %w", err)
	}
	c.columns = fields
	return nil
}

// Decode implements Codec.
func (c *csvCodec) Decode(data []byte) (map[string]any, error) {
	if len(c.columns) == 0 {
		return nil, errors.New("csv: no columns: declare columns or a schema, or read a header row")
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
		v, err := parseText(c.fields[i], f.Type, name)
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
