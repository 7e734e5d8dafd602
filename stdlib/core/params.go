package core

import (
	"fmt"
	"strconv"
	"strings"
	"time"

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

// batchSize returns cfg's batch attribute.
func batchSize(cfg stdlib.Config) (int, error) {
	n, err := intAttr(cfg, "batch", 1024)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > 1<<20 {
		return 0, fmt.Errorf("batch must be between 1 and 1048576, not %d", n)
	}
	return int(n), nil
}

// rawOutput is the type of records of a raw format: {value: string}.
func rawOutput(attrs map[string]any) *types.Type {
	switch f, _ := attrs["format"].(stdlib.Ident); f {
	case "lines", "string":
		return types.RecordOf(&types.Field{Name: "value", Type: types.StringType})
	case "bytes":
		return types.RecordOf(&types.Field{Name: "value", Type: types.BytesType})
	}
	return nil
}

// newCodec builds the codec of a stage's format attribute.
func newCodec(cfg stdlib.Config, schema *types.Type) (codec.Codec, error) {
	format := cfg.String("format")
	if format == "" {
		format = "json"
	}
	opts := codec.Options{Columns: cfg.Strings("columns"), KeepInvalidUTF8: cfg.String("invalid_utf8") == "keep"}
	if d := cfg.String("delimiter"); d != "" {
		if len(d) != 1 {
			return nil, fmt.Errorf("delimiter must be one byte, not %q", d)
		}
		opts.Comma = d[0]
	}
	return codec.New(format, schema, opts)
}

// formatParam is the format of a source of lines (file, stdin).
var formatParam = stdlib.Param{
	Name: "format", Type: stdlib.Enum("json", "csv", "lines"), Default: stdlib.Ident("json"),
	Doc: "json: one object per line; csv: one row per line; lines: each line as {value: string}, which takes no schema",
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

// headerAttr returns the header attribute (default true).
func headerAttr(cfg stdlib.Config) (headerMode, error) {
	if cfg.String("header") == "auto" {
		return headerAuto, nil
	}
	b, err := boolAttr(cfg, "header", true)
	switch {
	case err != nil:
		return 0, fmt.Errorf("attribute \"header\" must be true, false or auto, not %v", cfg.Attrs["header"])
	case b:
		return headerTrue, nil
	}
	return headerFalse, nil
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

// Attribute accessors. Besides the Go value of the attribute's kind each
// also takes a string, parsed as that kind: an attribute written as a
// reference (count = "${env:N}") is a string until a task starts and
// resolves it. An absent attribute gives def.

func intAttr(cfg stdlib.Config, name string, def int64) (int64, error) {
	switch v := cfg.Attrs[name].(type) {
	case nil:
		return def, nil
	case int64:
		return v, nil
	case float64:
		if v == float64(int64(v)) {
			return int64(v), nil
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("attribute %q must be an int, not %v", name, cfg.Attrs[name])
}

func floatAttr(cfg stdlib.Config, name string, def float64) (float64, error) {
	switch v := cfg.Attrs[name].(type) {
	case nil:
		return def, nil
	case int64:
		return float64(v), nil
	case float64:
		return v, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err == nil {
			return f, nil
		}
	}
	return 0, fmt.Errorf("attribute %q must be a number, not %v", name, cfg.Attrs[name])
}

func boolAttr(cfg stdlib.Config, name string, def bool) (bool, error) {
	switch v := cfg.Attrs[name].(type) {
	case nil:
		return def, nil
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("attribute %q must be true or false, not %v", name, cfg.Attrs[name])
}

func durationAttr(cfg stdlib.Config, name string, def time.Duration) (time.Duration, error) {
	switch v := cfg.Attrs[name].(type) {
	case nil:
		return def, nil
	case time.Duration:
		return v, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err == nil {
			return d, nil
		}
	}
	return 0, fmt.Errorf("attribute %q must be a duration such as 250ms, not %v", name, cfg.Attrs[name])
}

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func sizeAttr(cfg stdlib.Config, name string, def int64) (int64, error) {
	switch v := cfg.Attrs[name].(type) {
	case nil:
		return def, nil
	case int64:
		return v, nil
	case string:
		s := strings.TrimSpace(v)
		mult := 1.0
		for _, u := range sizeUnits {
			if strings.HasSuffix(s, u.suffix) {
				s, mult = strings.TrimSuffix(s, u.suffix), u.mult
				break
			}
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 {
			return int64(f * mult), nil
		}
	}
	return 0, fmt.Errorf("attribute %q must be a size such as 64MiB, not %v", name, cfg.Attrs[name])
}
