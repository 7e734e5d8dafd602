package s3

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/codec"
)

// encoder encodes the records of one object into buf.
type encoder interface {
	// add encodes one record; an error rejects that record alone.
	add(m map[string]any) error
	// size is the number of bytes encoded so far (for parquet, of the row
	// groups flushed: records still buffered are not counted).
	size() int64
	// finish completes the object (parquet's footer) and returns its bytes.
	finish() ([]byte, error)
}

// lineEncoder writes one record per line (json, csv).
type lineEncoder struct {
	codec  codec.Codec
	header bool // a csv header row is due before the first record
	buf    []byte
}

func (e *lineEncoder) add(m map[string]any) error {
	n := len(e.buf)
	var err error
	if e.header {
		if e.buf, err = e.codec.(codec.HeaderCodec).AppendHeader(e.buf, m); err != nil {
			e.buf = e.buf[:n]
			return err
		}
		e.buf = append(e.buf, '\n')
	}
	if e.buf, err = e.codec.Append(e.buf, m); err != nil {
		e.buf = e.buf[:n]
		return err
	}
	e.header = false
	e.buf = append(e.buf, '\n')
	return nil
}

func (e *lineEncoder) size() int64             { return int64(len(e.buf)) }
func (e *lineEncoder) finish() ([]byte, error) { return e.buf, nil }

// parquetEncoder writes a Parquet file whose schema follows the record
// type.
type parquetEncoder struct {
	t    *types.Type
	buf  bytes.Buffer
	w    *parquet.GenericWriter[map[string]any]
	rows []map[string]any // checked, not yet handed to w
}

// parquetRows is how many records the Parquet encoder hands to the writer
// at once.
const parquetRows = 512

func newParquetEncoder(s *parquet.Schema, t *types.Type, opts []parquet.WriterOption) *parquetEncoder {
	e := &parquetEncoder{t: t}
	e.w = parquet.NewGenericWriter[map[string]any](&e.buf, append([]parquet.WriterOption{s}, opts...)...)
	return e
}

// add checks the record against the type (parquetValue), so that what
// the writer is handed later cannot fail on its own.
func (e *parquetEncoder) add(m map[string]any) error {
	v, err := parquetValue(e.t, m, "")
	if err != nil {
		return err
	}
	e.rows = append(e.rows, v.(map[string]any))
	if len(e.rows) >= parquetRows {
		return e.flush()
	}
	return nil
}

// flush hands the checked rows to the writer.
func (e *parquetEncoder) flush() (err error) {
	if len(e.rows) == 0 {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parquet: %v", r)
		}
	}()
	_, err = e.w.Write(e.rows)
	clear(e.rows)
	e.rows = e.rows[:0]
	return err
}

func (e *parquetEncoder) size() int64 { return int64(e.buf.Len()) }

func (e *parquetEncoder) finish() ([]byte, error) {
	if err := e.flush(); err != nil {
		return nil, err
	}
	if err := e.w.Close(); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

// parquetCodecs are the compression attribute's values.
var parquetCodecs = map[string]compress.Codec{
	"snappy": &parquet.Snappy, "zstd": &parquet.Zstd, "gzip": &parquet.Gzip, "none": &parquet.Uncompressed,
}

// parquetSchema returns the Parquet schema of records of type t: a column
// per field (sorted by name, as Parquet groups are), int as INT64, float as
// DOUBLE, string as STRING, bool as BOOLEAN, timestamp as TIMESTAMP(MICROS,
// UTC), bytes as BYTE_ARRAY, lists as LIST, maps as MAP with string keys,
// records as groups, and any as JSON text. An optional field is OPTIONAL.
func parquetSchema(name string, t *types.Type) (*parquet.Schema, error) {
	if t == nil || t.Kind != types.Record || len(t.Fields) == 0 {
		return nil, fmt.Errorf("parquet needs the record type: declare schema = Name on the sink or give its input a typed source")
	}
	n, err := parquetNode(t, "")
	if err != nil {
		return nil, err
	}
	return parquet.NewSchema(name, n), nil
}

func parquetNode(t *types.Type, path string) (parquet.Node, error) {
	var n parquet.Node
	switch t.Kind {
	case types.String:
		n = parquet.String()
	case types.Int:
		n = parquet.Int(64)
	case types.Float:
		n = parquet.Leaf(parquet.DoubleType)
	case types.Bool:
		n = parquet.Leaf(parquet.BooleanType)
	case types.Timestamp:
		n = parquet.Timestamp(parquet.Microsecond)
	case types.Bytes:
		n = parquet.Leaf(parquet.ByteArrayType)
	case types.Any:
		n = parquet.JSON()
	case types.List:
		e, err := parquetNode(t.Elem, path+"[]")
		if err != nil {
			return nil, err
		}
		n = parquet.List(e)
	case types.Map:
		e, err := parquetNode(t.Elem, path+"[]")
		if err != nil {
			return nil, err
		}
		n = parquet.Map(parquet.String(), e)
	case types.Record:
		if len(t.Fields) == 0 {
			return nil, fmt.Errorf("field %q: a record without fields has no Parquet type", path)
		}
		g := parquet.Group{}
		for _, f := range t.Fields {
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			fn, err := parquetNode(f.Type, p)
			if err != nil {
				return nil, err
			}
			g[f.Name] = fn
		}
		n = g
	default:
		return nil, fmt.Errorf("field %q: type %s has no Parquet type", path, t)
	}
	if t.Optional {
		n = parquet.Optional(n)
	}
	return n, nil
}

// parquetValue checks v against t and converts what the Parquet writer
// takes in another form: any values to JSON text. A required field that
// is missing or null is an error naming it.
func parquetValue(t *types.Type, v any, path string) (any, error) {
	if v == nil {
		if t.Optional {
			return nil, nil
		}
		if t.Kind == types.Any {
			return []byte("null"), nil
		}
		return nil, fmt.Errorf("field %q is null, but its type %s is not optional", path, t)
	}
	bad := func() (any, error) { return nil, fmt.Errorf("field %q: want %s, got %T", path, t, v) }
	switch t.Kind {
	case types.String:
		if _, ok := v.(string); !ok {
			return bad()
		}
	case types.Int:
		if _, ok := v.(int64); !ok {
			return bad()
		}
	case types.Float:
		switch x := v.(type) {
		case float64:
		case int64:
			return float64(x), nil
		default:
			return bad()
		}
	case types.Bool:
		if _, ok := v.(bool); !ok {
			return bad()
		}
	case types.Timestamp:
		if _, ok := v.(time.Time); !ok {
			return bad()
		}
	case types.Bytes:
		b, ok := v.([]byte)
		if !ok {
			return bad()
		}
		return bytes.Clone(b), nil // held until flushed
	case types.Any:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("field %q: %v", path, err)
		}
		return b, nil
	case types.List:
		l, ok := v.([]any)
		if !ok {
			return bad()
		}
		out := make([]any, len(l))
		for i, x := range l {
			y, err := parquetValue(t.Elem, x, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	case types.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		out := make(map[string]any, len(m))
		for k, x := range m {
			y, err := parquetValue(t.Elem, x, path+"["+k+"]")
			if err != nil {
				return nil, err
			}
			out[k] = y
		}
		return out, nil
	case types.Record:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		out := make(map[string]any, len(t.Fields))
		for _, f := range t.Fields {
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			y, err := parquetValue(f.Type, m[f.Name], p)
			if err != nil {
				return nil, err
			}
			out[f.Name] = y
		}
		return out, nil
	}
	return v, nil
}
