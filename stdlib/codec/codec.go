package codec

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"pipe.dev/pipe/lang/types"
)

// Formats lists the format names New accepts.
var Formats = []string{"json", "csv", "lines", "string", "bytes", "debezium"}

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
	// Comma is the CSV field delimiter; 0 means ','.
	Comma byte
	// KeepInvalidUTF8 makes the text formats (json strings, csv fields,
	// lines) keep invalid UTF-8 as the bytes it is. By default it is a
	// decode error wrapping [ErrInvalidUTF8]; it is never replaced.
	KeepInvalidUTF8 bool
}

// ErrInvalidUTF8 is wrapped by the decode error of a text format's message
// that is not valid UTF-8 (a JSON \u escape of a lone UTF-16 surrogate
// counts as invalid UTF-8).
var ErrInvalidUTF8 = errors.New("invalid UTF-8")

// checkUTF8 returns an error naming the offset of the first invalid UTF-8
// sequence of b, or nil when b is valid.
func checkUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		i += n
	}
	return fmt.Errorf("%w at offset %d", ErrInvalidUTF8, i)
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
	// DecodeHeader reads a header row: the column names of later rows,
	// which are then mapped by name. With declared columns (Options.Columns
	// or a schema) it is an error naming the header's unknown columns and
	// the declared ones it lacks (a column of an optional or any field may
	// be left out); a column named twice is always an error.
	DecodeHeader(line []byte) error
	// IsHeader reports whether line reads as a header row: its fields are
	// distinct declared column names, in any order. Without declared
	// columns every line does.
	IsHeader(line []byte) bool
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
		c := newJSON(schema)
		c.keepInvalid = opts.KeepInvalidUTF8
		return c, nil
	case "csv":
		return newCSV(schema, opts)
	case "lines", "string":
		return linesCodec{keepInvalid: opts.KeepInvalidUTF8}, nil
	case "bytes":
		return bytesCodec{}, nil
	case "debezium":
		return newDebezium(schema, opts.KeepInvalidUTF8), nil
	}
	return nil, fmt.Errorf("codec: unknown format %q (want json, csv, lines, string, bytes or debezium)", format)
}
