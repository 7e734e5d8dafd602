package codec

import (
	"bytes"
	"encoding/json"
)

// DecodeJSONValue decodes any JSON value (object, array or scalar) into the
// run-time representation of lang/types: numbers become int64 when integral
// and in range, float64 otherwise. It is for single values off the hot path
// (message keys, json columns); records go through a Codec.
func DecodeJSONValue(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

// numbers converts json.Number values in place.
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
