package codec

import (
	"fmt"
	"strconv"
)

// linesCodec is the lines (string) format: {"value": "<text>"}.
type linesCodec struct {
	keepInvalid bool // keep invalid UTF-8 (Options.KeepInvalidUTF8)
}

func (c linesCodec) Decode(data []byte) (map[string]any, error) {
	if !c.keepInvalid {
		if err := checkUTF8(data); err != nil {
			return nil, fmt.Errorf("lines: %w", err)
		}
	}
	return map[string]any{"value": string(data)}, nil
}

func (linesCodec) Append(dst []byte, v map[string]any) ([]byte, error) {
	switch x := v["value"].(type) {
	case string:
		return append(dst, x...), nil
	case []byte:
		return append(dst, x...), nil
	case nil:
		if len(v) == 0 {
			return dst, nil
		}
		if _, ok := v["value"]; ok {
			return dst, nil
		}
		// A structured record written as a line: its JSON text.
		return appendValue(dst, v)
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	default:
		b, err := appendValue(dst, x)
		if err != nil {
			return dst, fmt.Errorf("field \"value\": %w", err)
		}
		return b, nil
	}
}

// bytesCodec is the bytes format: {"value": []byte}.
type bytesCodec struct{}

func (bytesCodec) Decode(data []byte) (map[string]any, error) {
	return map[string]any{"value": append([]byte(nil), data...)}, nil
}

func (bytesCodec) Append(dst []byte, v map[string]any) ([]byte, error) {
	switch x := v["value"].(type) {
	case []byte:
		return append(dst, x...), nil
	case string:
		return append(dst, x...), nil
	case nil:
		return dst, nil
	}
	return dst, fmt.Errorf("field \"value\": want bytes or string, got %T", v["value"])
}
