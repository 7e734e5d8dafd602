package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// decodeKey decodes a message key: nil stays nil.
func decodeKey(format string, b []byte) (any, error) {
	if b == nil {
		return nil, nil
	}
	switch format {
	case "bytes":
		return b, nil
	case "json":
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		return numbers(v), nil
	}
	return string(b), nil
}

// numbers converts json.Number values to int64 or float64.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

// encodeKey renders a record key as message key bytes.
func encodeKey(k any) ([]byte, error) {
	switch x := k.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case int:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case time.Time:
		return x.AppendFormat(nil, time.RFC3339Nano), nil
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return b, nil
}
