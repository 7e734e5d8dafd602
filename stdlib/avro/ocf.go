package avro

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	havro "github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"

	"pipe.dev/pipe/lang/types"
)

// Writer encodes records of one pipe type into the blocks of an Avro
// object container file (OCF). Its schema is derived from the pipe type
// (see SchemaOf); blocks are uncompressed (codec "null").
type Writer struct {
	typ    *types.Type
	schema havro.Schema
	sync   [16]byte
}

// NewWriter returns a writer of records of type t with a new random sync
// marker.
func NewWriter(t *types.Type) (*Writer, error) {
	s, err := SchemaOf(t)
	if err != nil {
		return nil, err
	}
	w := &Writer{typ: t, schema: s}
	if _, err := rand.Read(w.sync[:]); err != nil {
		return nil, err
	}
	return w, nil
}

// Schema returns the Avro schema the writer writes.
func (w *Writer) Schema() havro.Schema { return w.schema }

// Header appends the file header (magic, metadata with the schema, sync
// marker) to dst.
func (w *Writer) Header(dst []byte) ([]byte, error) {
	h := ocf.Header{
		Magic: [4]byte{'O', 'b', 'j', 1},
		Meta:  map[string][]byte{"avro.schema": []byte(w.schema.String()), "avro.codec": []byte("null")},
		Sync:  w.sync,
	}
	b, err := havro.Marshal(ocf.HeaderSchema, h)
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// Block appends one data block of count records, whose encodings are body,
// to dst.
func (w *Writer) Block(dst []byte, count int, body []byte) []byte {
	dst = appendLong(dst, int64(count))
	dst = appendLong(dst, int64(len(body)))
	dst = append(dst, body...)
	return append(dst, w.sync[:]...)
}

// Resume reads the header of an existing file and takes its sync marker,
// so that blocks appended to it belong to it. The file's schema must be the
// writer's.
func (w *Writer) Resume(r io.Reader) error {
	var h ocf.Header
	if err := havro.NewDecoderForSchema(ocf.HeaderSchema, r).Decode(&h); err != nil {
		return fmt.Errorf("reading the Avro header: %w", err)
	}
	if h.Magic != [4]byte{'O', 'b', 'j', 1} {
		return errors.New("not an Avro object container file")
	}
	fs, err := havro.Parse(string(h.Meta["avro.schema"]))
	if err != nil {
		return fmt.Errorf("the file's schema: %w", err)
	}
	if fs.Fingerprint() != w.schema.Fingerprint() {
		return errors.New("the file was written with another schema")
	}
	if c := string(h.Meta["avro.codec"]); c != "" && c != "null" {
		return fmt.Errorf("the file's codec is %q; only null is appended to", c)
	}
	w.sync = h.Sync
	return nil
}

// Decode implements codec.Codec; a Writer only encodes.
func (w *Writer) Decode([]byte) (map[string]any, error) {
	return nil, errors.New("avro: a writer does not decode")
}

// Append appends the Avro binary encoding of record v to dst.
func (w *Writer) Append(dst []byte, v map[string]any) ([]byte, error) {
	return appendValue(dst, w.typ, v, "")
}

// SchemaOf derives the Avro schema written for records of pipe type t:
// string → string, int → long, float → double, bool → boolean,
// bytes → bytes, timestamp → long timestamp-micros, T? → ["null", T],
// list<T> → array, map<string, T> → map, records → records named after
// their path. A field of type any cannot be written.
func SchemaOf(t *types.Type) (havro.Schema, error) {
	if t == nil || t.Kind != types.Record {
		return nil, errors.New("avro needs a record type: declare the sink's schema")
	}
	name := t.Name
	if name == "" {
		name = "Record"
	}
	j, err := schemaJSON(t, name, "")
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	return havro.Parse(string(b))
}

func schemaJSON(t *types.Type, name, path string) (any, error) {
	var s any
	switch t.Kind {
	case types.String:
		s = "string"
	case types.Int:
		s = "long"
	case types.Float:
		s = "double"
	case types.Bool:
		s = "boolean"
	case types.Bytes:
		s = "bytes"
	case types.Timestamp:
		s = map[string]any{"type": "long", "logicalType": "timestamp-micros"}
	case types.List:
		e, err := schemaJSON(t.Elem, name+"_item", path+"[]")
		if err != nil {
			return nil, err
		}
		s = map[string]any{"type": "array", "items": e}
	case types.Map:
		e, err := schemaJSON(t.Elem, name+"_value", path+"{}")
		if err != nil {
			return nil, err
		}
		s = map[string]any{"type": "map", "values": e}
	case types.Record:
		fields := []any{}
		for _, f := range t.Fields {
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			ft, err := schemaJSON(f.Type, name+"_"+f.Name, p)
			if err != nil {
				return nil, err
			}
			fj := map[string]any{"name": f.Name, "type": ft}
			if f.Type.Optional {
				fj["default"] = nil
			}
			fields = append(fields, fj)
		}
		s = map[string]any{"type": "record", "name": name, "fields": fields}
	default:
		return nil, fmt.Errorf("field %s has type %s, which has no Avro schema", path, t)
	}
	if t.Optional {
		return []any{"null", s}, nil
	}
	return s, nil
}

func appendValue(dst []byte, t *types.Type, v any, path string) ([]byte, error) {
	if t.Optional {
		if v == nil {
			return appendLong(dst, 0), nil
		}
		dst = appendLong(dst, 1)
	} else if v == nil {
		return nil, fmt.Errorf("field %s: null for a required %s", strings.TrimPrefix(path, "."), t)
	}
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("field %s: want %s, got %T", strings.TrimPrefix(path, "."), t.WithOptional(false), v)
	}
	switch t.Kind {
	case types.String:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		return append(appendLong(dst, int64(len(s))), s...), nil
	case types.Bytes:
		b, ok := v.([]byte)
		if !ok {
			return bad()
		}
		return append(appendLong(dst, int64(len(b))), b...), nil
	case types.Int:
		switch n := v.(type) {
		case int64:
			return appendLong(dst, n), nil
		case int:
			return appendLong(dst, int64(n)), nil
		}
		return bad()
	case types.Float:
		var f float64
		switch n := v.(type) {
		case float64:
			f = n
		case int64:
			f = float64(n)
		default:
			return bad()
		}
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f)), nil
	case types.Bool:
		b, ok := v.(bool)
		if !ok {
			return bad()
		}
		if b {
			return append(dst, 1), nil
		}
		return append(dst, 0), nil
	case types.Timestamp:
		ts, ok := v.(time.Time)
		if !ok {
			return bad()
		}
		return appendLong(dst, ts.UnixMicro()), nil
	case types.List:
		l, ok := v.([]any)
		if !ok {
			return bad()
		}
		if len(l) > 0 {
			dst = appendLong(dst, int64(len(l)))
			for i, e := range l {
				var err error
				if dst, err = appendValue(dst, t.Elem, e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return nil, err
				}
			}
		}
		return appendLong(dst, 0), nil
	case types.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		if len(m) > 0 {
			dst = appendLong(dst, int64(len(m)))
			for k, e := range m {
				dst = append(appendLong(dst, int64(len(k))), k...)
				var err error
				if dst, err = appendValue(dst, t.Elem, e, path+"."+k); err != nil {
					return nil, err
				}
			}
		}
		return appendLong(dst, 0), nil
	case types.Record:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		for _, f := range t.Fields {
			var err error
			if dst, err = appendValue(dst, f.Type, m[f.Name], path+"."+f.Name); err != nil {
				return nil, err
			}
		}
		return dst, nil
	}
	return bad()
}

// appendLong appends the zig-zag varint encoding of n.
func appendLong(dst []byte, n int64) []byte {
	return binary.AppendUvarint(dst, uint64(n<<1)^uint64(n>>63))
}
