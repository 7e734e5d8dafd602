package avro

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
)

// Reader decodes the blocks of an Avro object container file into records
// of a pipe type: each record is decoded with the file's (writer) schema
// and resolved against the type by field name, as Avro schema resolution
// does: a field the type has and the file lacks is null (an error when the
// field is required), a field the file has and the type lacks is skipped,
// int and long promote to float, string and bytes to each other.
type Reader struct {
	writer  havro.Schema
	typ     *types.Type
	sync    [16]byte
	deflate bool
	// HeaderLen is the length of the file's header: the first block
	// starts there.
	HeaderLen int
}

// ParseHeader parses the header at the start of b. It returns a nil
// Reader and no error when b does not hold the whole header yet.
func ParseHeader(b []byte, t *types.Type) (*Reader, error) {
	if len(b) < 4 {
		return nil, nil
	}
	if !bytes.Equal(b[:4], []byte{'O', 'b', 'j', 1}) {
		return nil, errors.New("not an Avro object container file")
	}
	p := 4
	meta := map[string][]byte{}
	for {
		n, k := varlong(b[p:])
		if k == 0 {
			return nil, nil
		}
		p += k
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			_, k := varlong(b[p:])
			if k == 0 {
				return nil, nil
			}
			p += k
		}
		for range n {
			key, k := varbytes(b[p:])
			if k == 0 {
				return nil, nil
			}
			p += k
			val, k := varbytes(b[p:])
			if k == 0 {
				return nil, nil
			}
			p += k
			meta[string(key)] = val
		}
	}
	if len(b) < p+16 {
		return nil, nil
	}
	r := &Reader{typ: t, HeaderLen: p + 16}
	copy(r.sync[:], b[p:])
	switch c := string(meta["avro.codec"]); c {
	case "", "null":
	case "deflate":
		r.deflate = true
	default:
		return nil, fmt.Errorf("the file's codec is %q: null and deflate are read", c)
	}
	s, err := havro.ParseBytesWithCache(meta["avro.schema"], "", &havro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("the file's schema: %w", err)
	}
	r.writer = s
	return r, nil
}

// Block returns the number of records of the block at the start of b, and
// the block's length; n is 0 when b does not hold the whole block.
func (r *Reader) Block(b []byte) (count int64, n int) {
	count, k1 := varlong(b)
	if k1 == 0 {
		return 0, 0
	}
	size, k2 := varlong(b[k1:])
	if k2 == 0 || size < 0 || int64(len(b)-k1-k2) < size+16 {
		return 0, 0
	}
	return count, k1 + k2 + int(size) + 16
}

// BlockLen reads the two numbers that open a block, at the start of b:
// its records and its length, sync marker included.
func BlockLen(b []byte) (count, n int64, ok bool) {
	count, k1 := varlong(b)
	if k1 == 0 {
		return 0, 0, false
	}
	size, k2 := varlong(b[k1:])
	if k2 == 0 || size < 0 {
		return 0, 0, false
	}
	return count, int64(k1+k2) + size + 16, true
}

// Records decodes the records of a whole block b (as Block delimits it),
// calling fn with each record's index in the block and its value or
// error. A block that cannot be read at all is an error.
func (r *Reader) Records(b []byte, fn func(i int, v map[string]any, err error)) error {
	count, k1 := varlong(b)
	size, k2 := varlong(b[k1:])
	data := b[k1+k2 : k1+k2+int(size)]
	if !bytes.Equal(b[k1+k2+int(size):k1+k2+int(size)+16], r.sync[:]) {
		return errors.New("a block does not end with the file's sync marker")
	}
	if r.deflate {
		var err error
		if data, err = io.ReadAll(flate.NewReader(bytes.NewReader(data))); err != nil {
			return fmt.Errorf("inflating a block: %w", err)
		}
	}
	d := decoder{b: data}
	for i := range int(count) {
		v, err := d.value(r.writer, r.typ)
		if err != nil {
			// The rest of the block cannot be delimited: its records fail.
			for j := i; j < int(count); j++ {
				fn(j, nil, err)
			}
			return nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			fn(i, nil, errors.New("the value is not a record"))
			continue
		}
		fn(i, m, nil)
	}
	return nil
}

func varlong(b []byte) (int64, int) {
	u, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, 0
	}
	return int64(u>>1) ^ -int64(u&1), k
}

func varbytes(b []byte) ([]byte, int) {
	n, k := varlong(b)
	if k == 0 || n < 0 || int64(len(b)-k) < n {
		return nil, 0
	}
	return b[k : k+int(n)], k + int(n)
}
