package kafka

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"pipe.dev/pipe/stdlib/codec"
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
		return codec.DecodeJSONValue(b)
	}
	return string(b), nil
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
