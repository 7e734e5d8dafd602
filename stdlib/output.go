package stdlib

import (
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/codec"
)

// RawOutput is the Spec.Output of a source whose format attribute may
// name a raw format: {value: string} for string and lines, {value: bytes}
// for bytes; nil (unknown) for the structured ones.
func RawOutput(attrs map[string]any) *types.Type {
	switch f, _ := attrs["format"].(Ident); f {
	case "string", "lines":
		return types.RecordOf(&types.Field{Name: "value", Type: types.StringType})
	case "bytes":
		return types.RecordOf(&types.Field{Name: "value", Type: types.BytesType})
	}
	return nil
}

// CheckDebeziumInput is the Spec.CheckInput of a sink whose format
// attribute may be debezium: the records must be change records, which
// have an envelope.
func CheckDebeziumInput(attrs map[string]any, records *types.Type) []AttrError {
	if f, _ := attrs["format"].(Ident); f != "debezium" {
		return nil
	}
	if err := codec.CheckDebezium(records); err != nil {
		return []AttrError{{Attr: "format", Message: err.Error()}}
	}
	return nil
}
