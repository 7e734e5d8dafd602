package core

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

func init() { stdlib.MustRegister(StdinSpec) }

// StdinSpec is the stdin source: records from standard input, one per line.
var StdinSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "stdin",
	Summary: "records from standard input, one per line (JSON lines, CSV or raw lines); ends at end of input",
	Params: append([]stdlib.Param{
		formatParam,
		batchParam,
	}, textSourceParams...),
	Bounded: true,
	Schema:  true,
	Meta:    []stdlib.MetaField{stdlib.MetaOffset},
	Output:  stdlib.RawOutput,
	Check:   checkTextSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newStdin(cfg, os.Stdin)
	},
}

// stdinSource reads one stream. Only task 0 reads; other tasks end at once.
// The partition is "stdin" and offsets are byte offsets after each line: a
// stream cannot be read again, so the source never resumes: every run reads
// its standard input from the start, and no sink drops its records as
// replays of an earlier run's.
type stdinSource struct {
	cfg    stdlib.Config
	in     io.Reader
	codec  codec.Codec
	header headerMode
	// headerDue: the next non-blank line may be the csv header row.
	headerDue bool
	line      int64 // number (from 1) of the line at off
	batch     int
	chunks    chan []byte
	errc      chan error
	buf       []byte
	off       int64 // stream offset of buf[0]
	eof       bool
	stop      chan struct{}
}

func newStdin(cfg stdlib.Config, in io.Reader) (*stdinSource, error) {
	c, err := newCodec(cfg, cfg.Schema)
	if err != nil {
		return nil, fmt.Errorf("stdin %q: %v", cfg.Stage, err)
	}
	header := headerAttr(cfg)
	_, isCSV := c.(codec.HeaderCodec)
	return &stdinSource{cfg: cfg, in: in, codec: c, header: header, headerDue: isCSV && header != headerFalse, line: 1, batch: int(cfg.Int("batch"))}, nil
}

// Open implements stdlib.Source.
func (s *stdinSource) Open(ctx context.Context, resume stdlib.Resumer) error {
	if s.cfg.Task != 0 {
		s.eof = true
		return nil
	}
	s.chunks = make(chan []byte, 4)
	s.errc = make(chan error, 1)
	s.stop = make(chan struct{})
	go s.pump()
	return nil
}

// pump reads the stream into chunks until its end or Close.
func (s *stdinSource) pump() {
	defer close(s.chunks)
	for {
		b := make([]byte, 256<<10)
		n, err := s.in.Read(b)
		if n > 0 {
			select {
			case s.chunks <- b[:n]:
			case <-s.stop:
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				s.errc <- err
			}
			return
		}
	}
}

// Read implements stdlib.Source.
func (s *stdinSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	for {
		recs, consumed, err := s.lines()
		if err != nil {
			return nil, fmt.Errorf("stdin %q: %v", s.cfg.Stage, err)
		}
		if len(recs) > 0 {
			return recs, nil
		}
		if consumed {
			continue
		}
		if s.eof {
			return nil, stdlib.ErrEndOfInput
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case b, ok := <-s.chunks:
			if !ok {
				select {
				case err := <-s.errc:
					return nil, fmt.Errorf("stdin %q: %v", s.cfg.Stage, err)
				default:
				}
				s.eof = true
				continue
			}
			s.buf = append(s.buf, b...)
			// Take whatever else is already there without waiting.
			for more := true; more && bytes.Count(s.buf, []byte{'\n'}) < s.batch; {
				select {
				case b, ok := <-s.chunks:
					if !ok {
						more = false
						s.eof = true
						break
					}
					s.buf = append(s.buf, b...)
				default:
					more = false
				}
			}
		}
	}
}

// lines decodes up to a batch of complete lines from buf; it reports
// whether it consumed any (all may have been skipped). Its error is a csv
// header row that does not fit.
func (s *stdinSource) lines() ([]stdlib.Record, bool, error) {
	// Find the batch's lines, then copy them once: the copy backs every
	// record's Raw and the decoded strings.
	end, n := 0, 0
	for n < s.batch {
		i := bytes.IndexByte(s.buf[end:], '\n')
		if i < 0 {
			if s.eof && end < len(s.buf) {
				end = len(s.buf)
				n++
			}
			break
		}
		end += i + 1
		n++
	}
	if end == 0 {
		return nil, false, nil
	}
	chunk := bytes.Clone(s.buf[:end])
	recs := s.cfg.Recycler.Batch(n)[:0]
	od, owned := s.codec.(codec.OwnedDecoder)
	for start := 0; start < len(chunk); s.line++ {
		stop := len(chunk)
		if i := bytes.IndexByte(chunk[start:], '\n'); i >= 0 {
			stop = start + i + 1
		}
		lineStart := s.off + int64(start)
		line := trimEOL(chunk[start:stop])
		pos := stdlib.Position{Source: s.cfg.Stage, Partition: "stdin", Offset: s.off + int64(stop)}
		start = stop
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if s.headerDue {
			// Read even when resuming past it: it names the columns.
			s.headerDue = false
			isHeader, err := takeHeader(s.codec.(codec.HeaderCodec), s.header, line)
			if err != nil {
				return nil, true, lineError("stdin", s.line, lineStart, err)
			}
			if isHeader {
				continue
			}
		}
		r := stdlib.Record{Partition: -1, Raw: line, Pos: pos, Line: s.line, Start: lineStart}
		var v map[string]any
		var err error
		if owned {
			v, err = od.DecodeOwned(line)
		} else {
			v, err = s.codec.Decode(line)
		}
		if err != nil {
			r.Err = lineError("stdin", s.line, lineStart, err)
		} else {
			r.Value = v
		}
		recs = append(recs, r)
	}
	s.buf = s.buf[end:]
	s.off += int64(end)
	if len(s.buf) == 0 {
		s.buf = nil
	}
	return recs, true, nil
}

// Commit implements stdlib.Source.
func (s *stdinSource) Commit(context.Context, []stdlib.Position) error { return nil }

// Close implements stdlib.Source. The standard input itself stays open.
func (s *stdinSource) Close(context.Context) error {
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
	return nil
}
