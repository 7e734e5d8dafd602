package schemareg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic is the first byte of every message in the Confluent wire format.
const Magic = 0

// HeaderLen is the length of the frame before the payload: the magic byte
// and the schema id.
const HeaderLen = 5

// Append appends the frame of a message written with schema id to dst: the
// payload follows.
func Append(dst []byte, id int) []byte {
	dst = append(dst, Magic)
	return binary.BigEndian.AppendUint32(dst, uint32(id))
}

// ErrNotFramed is wrapped by the error of a message that does not start
// with the wire format's frame.
var ErrNotFramed = errors.New("not in the schema registry wire format")

// Parse splits a message into its schema id and payload.
func Parse(b []byte) (id int, payload []byte, err error) {
	if len(b) < HeaderLen {
		return 0, nil, fmt.Errorf("%w: %d bytes, the frame alone is %d", ErrNotFramed, len(b), HeaderLen)
	}
	if b[0] != Magic {
		return 0, nil, fmt.Errorf("%w: first byte is %d, not %d", ErrNotFramed, b[0], Magic)
	}
	return int(binary.BigEndian.Uint32(b[1:HeaderLen])), b[HeaderLen:], nil
}

// AppendIndexes appends Protobuf message indexes (the path of the message
// type in its file: [0] for the first top-level message) after the frame:
// a count and the indexes as zig-zag varints, [0] as the single byte 0.
func AppendIndexes(dst []byte, idx []int) []byte {
	if len(idx) == 1 && idx[0] == 0 {
		return append(dst, 0)
	}
	dst = binary.AppendVarint(dst, int64(len(idx)))
	for _, i := range idx {
		dst = binary.AppendVarint(dst, int64(i))
	}
	return dst
}

// ParseIndexes reads the Protobuf message indexes at the start of a
// payload and returns them with the rest.
func ParseIndexes(b []byte) ([]int, []byte, error) {
	n, k := binary.Varint(b)
	if k <= 0 || n < 0 || n > int64(len(b)) {
		return nil, nil, fmt.Errorf("%w: bad message index count", ErrNotFramed)
	}
	b = b[k:]
	if n == 0 {
		return []int{0}, b, nil
	}
	idx := make([]int, n)
	for i := range idx {
		v, k := binary.Varint(b)
		if k <= 0 {
			return nil, nil, fmt.Errorf("%w: bad message index", ErrNotFramed)
		}
		idx[i], b = int(v), b[k:]
	}
	return idx, b, nil
}
