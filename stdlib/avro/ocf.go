package avro

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	havro "github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"

	"pipe.dev/pipe/lang/types"
)

// Writer encodes records of one pipe type into the blocks of an Avro
// object container file (OCF). Its schema is derived from the pipe type
// (see SchemaOf); blocks are uncompressed (codec "null").
type Writer struct {
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
	w := &Writer{schema: s}
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
	return encode(dst, w.schema, v)
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

// appendLong appends the zig-zag varint encoding of n.
func appendLong(dst []byte, n int64) []byte {
	return binary.AppendUvarint(dst, uint64(n<<1)^uint64(n>>63))
}
