package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

func init() { stdlib.MustRegister(StdoutSpec) }

// StdoutSpec is the stdout sink: one line per record on standard output.
var StdoutSpec = &stdlib.Spec{
	Kind:    stdlib.SinkKind,
	Name:    "stdout",
	Summary: "records to standard output, one per line (JSON lines, CSV or raw lines)",
	Params: append([]stdlib.Param{
		{Name: "format", Type: stdlib.Enum("json", "csv", "lines"), Default: stdlib.Ident("json"), Doc: "json: one object per line; csv: one row per line (header row first when header = true); lines: the record's value field as text"},
	}, csvSinkParams...),
	Delivery: []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.AtMostOnce},
	Releases: true,
	Schema:   true,
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
		return newStdout(cfg, os.Stdout)
	},
}

// stdoutSink writes each batch with one write: after a crash, records
// since the last checkpoint are written again (at least once).
type stdoutSink struct {
	cfg    stdlib.Config
	sent   atomic.Int64 // bytes written (stdlib.ByteCounter)
	out    io.Writer
	codec  codec.Codec
	header bool
	buf    []byte
}

func newStdout(cfg stdlib.Config, out io.Writer) (*stdoutSink, error) {
	c, err := newCodec(cfg, cfg.RecordType())
	if err != nil {
		return nil, fmt.Errorf("stdout %q: %v", cfg.Stage, err)
	}
	_, isCSV := c.(codec.HeaderCodec)
	return &stdoutSink{cfg: cfg, out: out, codec: c, header: isCSV && cfg.Bool("header")}, nil
}

// Open implements stdlib.Sink.
func (s *stdoutSink) Open(context.Context) ([]stdlib.Position, error) { return nil, nil }

// SentBytes implements stdlib.ByteCounter.
func (s *stdoutSink) SentBytes() int64 { return s.sent.Load() }

// Write implements stdlib.Sink.
func (s *stdoutSink) Write(ctx context.Context, batch []stdlib.Record) error {
	buf, errs := encodeBatch(s.buf[:0], s.codec, batch, &s.header)
	s.buf = buf
	if len(buf) > 0 {
		n, err := s.out.Write(buf)
		s.sent.Add(int64(n))
		if err != nil {
			return fmt.Errorf("stdout %q: %v", s.cfg.Stage, err)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// encodeBatch appends one line per record of batch; records that cannot be
// encoded are left out and reported. *header says a CSV header row is due
// before the first record.
func encodeBatch(dst []byte, c codec.Codec, batch []stdlib.Record, header *bool) ([]byte, stdlib.RecordErrors) {
	var errs stdlib.RecordErrors
	for i := range batch {
		m, ok := batch[i].Value.(map[string]any)
		if !ok {
			if batch[i].Value != nil {
				errs = append(errs, stdlib.RecordError{Index: i, Err: fmt.Errorf("value is %T, not a record", batch[i].Value)})
				continue
			}
			m = map[string]any{}
		}
		if *header {
			*header = false
			var err error
			if dst, err = c.(codec.HeaderCodec).AppendHeader(dst, m); err != nil {
				errs = append(errs, stdlib.RecordError{Index: i, Err: err})
				continue
			}
			dst = append(dst, '\n')
		}
		n := len(dst)
		var err error
		if dst, err = c.Append(dst, m); err != nil {
			dst = dst[:n]
			errs = append(errs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		dst = append(dst, '\n')
	}
	return dst, errs
}

// Checkpoint implements stdlib.Sink: every batch is already written.
func (s *stdoutSink) Checkpoint(context.Context, stdlib.Checkpoint) error { return nil }

// Close implements stdlib.Sink.
func (s *stdoutSink) Close(context.Context) error { return nil }
