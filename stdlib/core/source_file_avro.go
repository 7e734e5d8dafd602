package core

import (
	"bytes"
	"errors"
	"io"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
)

// fileCodec returns the codec of the file source's format; an Avro object
// container file has none (see ocfRead).
func fileCodec(cfg stdlib.Config) (codec.Codec, error) {
	if cfg.String("format") == "avro" {
		return nil, nil
	}
	return newCodec(cfg, cfg.Schema)
}

// ocfType is the type Avro records are read as: the schema, else nil
// (every field as the file's schema maps to pipe types).
func ocfType(schema *types.Type) *types.Type {
	return schema
}

// ocfFrameEnd is frameEnd for an Avro object container file: at offset 0
// the header (read into tf.ocf), elsewhere one block.
func (tf *tailFile) ocfFrameEnd(data []byte, at int64, schema *types.Type) int {
	if at == 0 {
		if tf.ocf == nil {
			r, err := avro.ParseHeader(data, ocfType(schema))
			if err != nil || r == nil {
				return -1 // a bad header fails in ocfRead
			}
			tf.ocf = r
		}
		if len(data) < tf.ocf.HeaderLen {
			return -1
		}
		return tf.ocf.HeaderLen - 1
	}
	if tf.ocf == nil {
		return -1
	}
	_, n := tf.ocf.Block(data)
	return n - 1
}

// ocfRead returns the records of chunk, whole blocks of tf (after its
// header when chunk starts the file). Record i of a block at [bs, be) is
// at offset bs+i+1, the last one at be, so that a position names a record
// inside its block: ocfResume reads the block again from bs and skips the
// records before it. A block cut short at the end of a file, or a record
// that does not decode, is a record error.
func (s *fileSource) ocfRead(tf *tailFile, chunk []byte) ([]stdlib.Record, error) {
	var recs []stdlib.Record
	start := 0
	fail := func(err error) {
		at := tf.off + int64(start)
		recs = append(recs, stdlib.Record{Partition: -1, Err: lineError(tf.path, tf.line, at, err),
			Pos: stdlib.Position{Source: s.cfg.Stage, Partition: tf.st.name, Offset: tf.off + int64(len(chunk))}})
		start = len(chunk)
	}
	for start < len(chunk) {
		at := tf.off + int64(start)
		if at == 0 {
			r, err := avro.ParseHeader(chunk, ocfType(s.cfg.Schema))
			if err == nil && r == nil {
				err = errors.New("the Avro header is cut short")
			}
			if err != nil {
				fail(err)
				break
			}
			tf.ocf, start = r, r.HeaderLen
			continue
		}
		count, n := tf.ocf.Block(chunk[start:])
		if n == 0 {
			fail(errors.New("an Avro block is cut short"))
			break
		}
		bs, be := at, at+int64(n)
		err := tf.ocf.Records(chunk[start:start+n], func(i int, v map[string]any, err error) {
			if i < tf.skip {
				return
			}
			off := be
			if last := int(count) - 1; i < last {
				off = bs + int64(i) + 1
				if int64(last) >= be-bs {
					off = bs // too many records for offsets inside the block: read it again
				}
			}
			r := stdlib.Record{Partition: -1, Line: tf.line, Start: bs,
				Pos: stdlib.Position{Source: s.cfg.Stage, Partition: tf.st.name, Offset: off}}
			if err != nil {
				r.Err = lineError(tf.path, tf.line, bs, err)
			} else {
				r.Value = v
			}
			recs = append(recs, r)
			tf.line++
		})
		tf.skip = 0
		if err != nil {
			fail(err)
			break
		}
		start += n
	}
	tf.buf = tf.buf[len(chunk):]
	tf.off += int64(len(chunk))
	tf.st.off = tf.off
	tf.lines -= bytes.Count(chunk, []byte{'\n'})
	if len(recs) == 0 {
		return s.readFile(tf)
	}
	return recs, nil
}

// ocfResume reads the header of tf and finds the block holding offset
// start (see ocfRead): it returns the block's offset, to read from, and
// sets the records to skip in it and the number of the next record.
func (tf *tailFile) ocfResume(schema *types.Type, start int64) (int64, error) {
	head := make([]byte, 64<<10)
	for {
		n, err := tf.f.ReadAt(head, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		r, perr := avro.ParseHeader(head[:n], ocfType(schema))
		if perr != nil {
			return 0, perr
		}
		if r != nil {
			tf.ocf = r
			break
		}
		if n < len(head) {
			return 0, errors.New("the Avro header is cut short")
		}
		head = make([]byte, 2*len(head))
	}
	pos := int64(tf.ocf.HeaderLen)
	var buf [20]byte
	for pos < start {
		n, err := tf.f.ReadAt(buf[:], pos)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		count, size, ok := avro.BlockLen(buf[:n])
		if !ok {
			return 0, errors.New("the stored position is past the file's last whole Avro block")
		}
		if start < pos+size {
			tf.skip = int(start - pos)
			tf.line += int64(tf.skip)
			return pos, nil
		}
		tf.line += count
		pos += size
	}
	return pos, nil
}
