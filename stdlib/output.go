package stdlib

import "pipe.dev/pipe/lang/types"

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
