package s3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// pqReader reads the rows of one Parquet object: its offsets count rows
// (the offset of a record is its row number from 1, the rows before and
// it), and a resumed object continues at the row after the held one.
type pqReader struct {
	obj  *minio.Object
	r    *parquet.GenericReader[map[string]any]
	root parquet.Node
	row  int64 // rows read so far
	rows []map[string]any
}

// openParquet opens o (read by ranges: the footer, then the row groups)
// and seeks past the first off rows.
func (s *source) openParquet(ctx context.Context, o minio.ObjectInfo, off int64) error {
	var obj *minio.Object
	err := s.c.do(ctx, func() error {
		opts := minio.GetObjectOptions{}
		if err := opts.SetMatchETag(trimETag(o.ETag)); err != nil {
			return err
		}
		var err error
		if obj, err = s.c.cli.GetObject(ctx, s.c.bucket, o.Key, opts); err != nil {
			return err
		}
		if _, err := obj.Stat(); err != nil {
			obj.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	f, err := parquet.OpenFile(obj, o.Size)
	if err != nil {
		obj.Close()
		return fmt.Errorf("%s is not a Parquet file: %v", o.Key, err)
	}
	if off >= f.NumRows() {
		obj.Close()
		return nil // read to its end before
	}
	pr := &pqReader{obj: obj, r: parquet.NewGenericReader[map[string]any](obj, f.Schema()), root: f.Schema(), row: off}
	if off > 0 {
		if err := pr.r.SeekToRow(off); err != nil {
			obj.Close()
			return fmt.Errorf("%s: seeking to row %d: %v", o.Key, off, err)
		}
	}
	s.pq, s.pqInfo = pr, o
	return nil
}

// readParquet reads up to a batch of rows of the current Parquet object.
func (s *source) readParquet() ([]stdlib.Record, error) {
	pr, o := s.pq, s.pqInfo
	if cap(pr.rows) < s.batch {
		pr.rows = make([]map[string]any, s.batch)
	}
	rows := pr.rows[:s.batch]
	for i := range rows {
		rows[i] = map[string]any{}
	}
	n, err := pr.r.Read(rows)
	if err != nil && !errors.Is(err, io.EOF) {
		s.closeParquet()
		return nil, s.errorf("reading %s: %v", o.Key, err)
	}
	recs := make([]stdlib.Record, 0, n)
	for _, row := range rows[:n] {
		pr.row++
		r := stdlib.Record{Pos: stdlib.Position{Source: s.cfg.Stage, Partition: o.Key, Offset: pr.row},
			Time: o.LastModified, Partition: -1}
		v, cerr := fromParquet(pr.root, row)
		if cerr == nil && s.cfg.Schema != nil {
			v, cerr = codec.Coerce(v, s.cfg.Schema, "")
		}
		if cerr != nil {
			r.Err = fmt.Errorf("%s row %d: %w", o.Key, pr.row, cerr)
		} else {
			r.Value = v
		}
		recs = append(recs, r)
	}
	if n < len(rows) || errors.Is(err, io.EOF) {
		s.closeParquet()
	}
	return recs, nil
}

func (s *source) closeParquet() {
	if s.pq != nil {
		s.pq.r.Close()
		s.pq.obj.Close()
		s.pq = nil
	}
}

// fromParquet converts a value read from a Parquet column of node n to
// pipe's representation: timestamps and dates to time.Time, 32-bit
// numbers to int64 and float64, STRING bytes to string, JSON text decoded.
func fromParquet(n parquet.Node, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	lt := n.Type().LogicalType()
	if !n.Leaf() {
		switch {
		case isLogical[*format.ListType](lt):
			l, ok := v.([]any)
			if !ok {
				return v, nil
			}
			elem := n.Fields()[0].Fields()[0]
			for i, x := range l {
				y, err := fromParquet(elem, x)
				if err != nil {
					return nil, err
				}
				l[i] = y
			}
			return l, nil
		case isLogical[*format.MapType](lt):
			m, ok := v.(map[string]any)
			if !ok {
				return v, nil
			}
			val := n.Fields()[0].Fields()[1]
			for k, x := range m {
				y, err := fromParquet(val, x)
				if err != nil {
					return nil, err
				}
				m[k] = y
			}
			return m, nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			return v, nil
		}
		for _, f := range n.Fields() {
			y, err := fromParquet(f, m[f.Name()])
			if err != nil {
				return nil, err
			}
			if y != nil || m[f.Name()] != nil {
				m[f.Name()] = y
			}
		}
		return m, nil
	}
	if lt != nil {
		if ts, ok := lt.Value.(*format.TimestampType); ok {
			n, ok := v.(int64)
			if !ok {
				return v, nil
			}
			switch ts.Unit.Value.(type) {
			case *format.MilliSeconds:
				return time.UnixMilli(n).UTC(), nil
			case *format.NanoSeconds:
				return time.Unix(0, n).UTC(), nil
			default:
				return time.UnixMicro(n).UTC(), nil
			}
		}
		if _, ok := lt.Value.(*format.DateType); ok {
			if d, ok := v.(int32); ok {
				return time.Unix(int64(d)*86400, 0).UTC(), nil
			}
		}
		if _, ok := lt.Value.(*format.JsonType); ok {
			var b []byte
			switch x := v.(type) {
			case []byte:
				b = x
			case string:
				b = []byte(x)
			default:
				return v, nil // already decoded
			}
			var out any
			if err := json.Unmarshal(b, &out); err != nil {
				return nil, err
			}
			return out, nil
		}
		if _, ok := lt.Value.(*format.StringType); ok {
			if b, ok := v.([]byte); ok {
				return string(b), nil
			}
		}
	}
	if x, ok := v.(string); ok && lt == nil && n.Type().Kind() == parquet.ByteArray {
		return []byte(x), nil // bytes without a logical type
	}
	switch x := v.(type) {
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	}
	return v, nil
}

// isLogical reports whether lt is a T.
func isLogical[T format.LogicalTypeValue](lt *format.LogicalType) bool {
	if lt == nil {
		return false
	}
	_, ok := lt.Value.(T)
	return ok
}
