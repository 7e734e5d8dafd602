package core

import (
	"fmt"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// batchParam is the batch attribute shared by the sources.
var batchParam = stdlib.Param{
	Name: "batch", Type: stdlib.Int, Default: int64(1024),
	Doc: "records per batch handed to the next stage (1 to 1048576)",
}

// checkBatch validates a batch attribute.
func checkBatch(attrs map[string]any) []stdlib.AttrError {
	if n, ok := attrs["batch"].(int64); ok && (n < 1 || n > 1<<20) {
		return []stdlib.AttrError{{Attr: "batch", Message: fmt.Sprintf("batch must be between 1 and 1048576, not %d", n)}}
	}
	return nil
}

// newCodec builds the codec of a stage's format attribute.
func newCodec(cfg stdlib.Config, schema *types.Type) (codec.Codec, error) {
	opts := codec.Options{Columns: cfg.Strings("columns"), KeepInvalidUTF8: cfg.String("invalid_utf8") == "keep"}
	if d := cfg.String("delimiter"); d != "" {
		if len(d) != 1 {
			return nil, fmt.Errorf("delimiter must be one byte, not %q", d)
		}
		opts.Comma = d[0]
	}
	return codec.New(cfg.String("format"), schema, opts)
}

// formatParam is the format of a source of lines (file, stdin).
var formatParam = stdlib.Param{
	Name: "format", Type: stdlib.Enum("json", "csv", "lines", "debezium"), Default: stdlib.Ident("json"),
	Doc: "json: one object per line; csv: one row per line; lines: each line as {value: string}, which takes no schema; debezium: a Debezium change event (JSON) per line, read as its row with the operation in __op",
}

// textSourceParams are the attributes of a source of json, csv or lines
// text: how it treats invalid UTF-8, and the CSV attributes.
var textSourceParams = []stdlib.Param{
	{Name: "invalid_utf8", Type: stdlib.Enum("error", "keep"), Default: stdlib.Ident("error"), Doc: "invalid UTF-8 in a line (a json string, a csv field, a lines line): a record error naming the line and offset, for on_error (error), or kept as the bytes it is (keep); never replaced"},
	{Name: "header", Type: stdlib.ParamType{Kind: stdlib.BoolParam, OrEnum: []string{"auto"}}, Default: true,
		Doc: "csv: the first non-blank line of each file (or the stream) is a header row naming the columns (true), is data (false), or is a header when its fields are distinct declared column names (auto); rows map to columns by the header's names, and a header not matching the declared columns fails the run naming them. It is read again when a file is resumed"},
	{Name: "columns", Type: stdlib.ListOf(stdlib.String), Doc: "csv: the column names in order (default: the schema's fields, else the header row); a header row must name them, in any order"},
	{Name: "delimiter", Type: stdlib.String, Default: ",", Doc: "csv: the one-byte field delimiter"},
}

// checkTextSource validates the attributes of textSourceParams and batch.
func checkTextSource(attrs map[string]any) []stdlib.AttrError {
	errs := checkBatch(attrs)
	if attrs["format"] == stdlib.Ident("csv") && attrs["header"] == false && attrs["columns"] == nil && attrs["schema"] == nil {
		errs = append(errs, stdlib.AttrError{Attr: "header", Message: "csv without a header row needs columns or a schema to name its columns"})
	}
	return errs
}

// headerMode is a csv source's header attribute.
type headerMode int

const (
	headerTrue headerMode = iota
	headerFalse
	headerAuto
)

// headerAttr returns the header attribute.
func headerAttr(cfg stdlib.Config) headerMode {
	switch {
	case cfg.String("header") == "auto":
		return headerAuto
	case cfg.Bool("header"):
		return headerTrue
	}
	return headerFalse
}

// takeHeader applies mode to the first non-blank line of an input: it
// reports whether line is the header row, read into hc. A header that
// does not fit hc's declared columns is an error.
func takeHeader(hc codec.HeaderCodec, mode headerMode, line []byte) (bool, error) {
	if mode == headerFalse || mode == headerAuto && !hc.IsHeader(line) {
		return false, nil
	}
	return true, hc.DecodeHeader(line)
}

// lineError is the error of the line numbered line (from 1) that starts at
// byte off of the input called name.
func lineError(name string, line, off int64, err error) error {
	return fmt.Errorf("%s: %w", stdlib.LineRef(name, line, off), err)
}

// csvSinkParams are the CSV attributes of a sink.
var csvSinkParams = []stdlib.Param{
	{Name: "header", Type: stdlib.Bool, Default: true, Doc: "csv: start each output file (or the stream) with a header row naming the columns"},
	{Name: "columns", Type: stdlib.ListOf(stdlib.String), Doc: "csv: the columns to write, in order (default: the schema's or input type's fields, else the first record's sorted keys); a missing field is an empty cell"},
	{Name: "delimiter", Type: stdlib.String, Default: ",", Doc: "csv: the one-byte field delimiter"},
}
