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
	header, err := boolAttr(cfg, "header", true)
	if err != nil {
		return nil, err
	}
	opts := codec.Options{Columns: cfg.Strings("columns"), Header: header}
	if d := cfg.String("delimiter"); d != "" {
		if len(d) != 1 {
			return nil, fmt.Errorf("delimiter must be one byte, not %q", d)
		}
		opts.Comma = d[0]
	}
	return codec.New(format, schema, opts)
}

// csvSourceParams are the CSV attributes of a source.
var csvSourceParams = []stdlib.Param{
	{Name: "header", Type: stdlib.Bool, Default: true, Doc: "csv: each file (or the stream) starts with a header row naming the columns; it is read again when a file is resumed"},
	{Name: "columns", Type: stdlib.ListOf(stdlib.String), Doc: "csv: the column names in order (default: the schema's fields, else the header row); declared columns win over a header row, which is then skipped"},
	{Name: "delimiter", Type: stdlib.String, Default: ",", Doc: "csv: the one-byte field delimiter"},
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
