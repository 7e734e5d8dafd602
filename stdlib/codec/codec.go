package codec

import (
	"fmt"

	"pipe.dev/pipe/lang/types"
)

// Formats lists the format names New accepts.
var Formats = []string{"json", "csv", "lines", "string", "bytes"}

// Codec decodes one message into a record value and appends the encoding
// of a record value to a buffer.
type Codec interface {
	// Decode decodes one message (without its line terminator). The result
	// does not alias data: the caller may reuse data.
	Decode(data []byte) (map[string]any, error)
	// Append appends the encoding of v to dst, without a line terminator.
	Append(dst []byte, v map[string]any) ([]byte, error)
}

// Options tunes a codec; the zero value works.
type Options struct {
	// Columns are the CSV columns, in order. When empty, a schema's field
	// order is used; when there is no schema either, the columns come from
	// a header row ([HeaderCodec]) or, when encoding, from the sorted keys
	// of the first record.
	Columns []string
	// Header reports that CSV input starts with a header row and that CSV
	// output should start with one (see [HeaderCodec]).
	Header bool
	// Comma is the CSV field delimiter; 0 means ','.
	Comma byte
}

// OwnedDecoder is implemented by codecs that can decode without copying
// the message first.
type OwnedDecoder interface {
	// DecodeOwned is Decode for a message the caller never modifies
	// again: the result may alias data.
	DecodeOwned(data []byte) (map[string]any, error)
}

// HeaderCodec is implemented by formats with a header row (csv).
type HeaderCodec interface {
	Codec
	// DecodeHeader reads a header row: the column names for later rows.
	DecodeHeader(line []byte) error
	// AppendHeader appends the header row of the codec's columns, given the
	// first record to be written (which fixes the columns when none are
	// declared).
	AppendHeader(dst []byte, first map[string]any) ([]byte, error)
}

// New returns a codec for format. schema may be nil; when set it must be a
// record type.
func New(format string, schema *types.Type, opts Options) (Codec, error) {
	if schema != nil && schema.Kind != types.Record {
		return nil, fmt.Errorf("codec: schema must be a record type, not %s", schema)
	}
	switch format {
	case "json", "jsonl", "ndjson":
		return newJSON(schema), nil
	case "csv":
		return newCSV(schema, opts)
	case "lines", "string":
		return linesCodec{}, nil
	case "bytes":
		return bytesCodec{}, nil
	}
	return nil, fmt.Errorf("codec: unknown format %q (want json, csv, lines, string or bytes)", format)
}
