package core

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

func init() { stdlib.MustRegister(FileSourceSpec) }

// FileSourceSpec is the file source: records from files, one per line.
var FileSourceSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "file",
	Summary: "records from local files (JSON lines, CSV or raw lines); a path or glob; resumes at byte offsets",
	Params: append([]stdlib.Param{
		{Name: "path", Type: stdlib.String, Required: true, Doc: "a file, or a glob (*, ?, [...]) of files; each file is a partition, spread over the tasks by a hash of its path and read in path order"},
		formatParam,
		{Name: "follow", Type: stdlib.Bool, Default: false, Doc: "keep reading data appended to the files (and files newly matching the glob), polling every poll; the source then never ends"},
		{Name: "poll", Type: stdlib.Duration, Default: 250 * time.Millisecond, Doc: "how often a followed file is checked for new data"},
		{Name: "start", Type: stdlib.Enum("beginning", "end"), Default: stdlib.Ident("beginning"), Doc: "where a file present at start and without a stored position is read from: its beginning, or its end (only data appended later); files appearing later are read from their beginning"},
		batchParam,
	}, textSourceParams...),
	Bounded: true,
	Schema:  true,
	Meta:    []stdlib.MetaField{stdlib.MetaOffset},
	Output:  rawOutput,
	Check: func(attrs map[string]any) []stdlib.AttrError {
		errs := checkTextSource(attrs)
		if d, ok := attrs["poll"].(time.Duration); ok && d <= 0 {
			errs = append(errs, stdlib.AttrError{Attr: "poll", Message: "poll must be positive"})
		}
		return errs
	},
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newFileSource(cfg)
	},
}

// readChunk is how much a file read asks for.
const readChunk = 1 << 20

// fileSource is one task of a file source stage.
type fileSource struct {
	cfg     stdlib.Config
	pattern string
	follow  bool
	poll    time.Duration
	atEnd   bool
	batch   int
	resume  stdlib.Resumer
	opened  bool       // Open has scanned: later files start at their beginning
	header  headerMode // csv: whether files start with a header row

	files []*tailFile // this task's files, in path order
	known map[string]bool
	cur   int // index of the file being read
	idle  int // files found without data in a row

	lag fileLag // what was read of each file, for Lag
}

// tailFile is one file being read.
type tailFile struct {
	path  string
	f     *os.File
	codec codec.Codec
	off   int64  // offset of buf[0] in the file
	buf   []byte // read but not yet consumed
	base  []byte // the buffer buf is a window of
	lines int    // newlines in buf
	eof   bool
	line  int64 // number (from 1) of the line at off
	// headed: the file's first non-blank line may be a csv header row;
	// headerDue: that line is still to come.
	headed, headerDue bool

	codecs []codec.Codec // more codecs, to decode parts of a batch in parallel
}

func newFileSource(cfg stdlib.Config) (*fileSource, error) {
	path := cfg.String("path")
	if path == "" {
		return nil, fmt.Errorf("file %q: path is empty", cfg.Stage)
	}
	if _, err := filepath.Match(path, ""); err != nil {
		return nil, fmt.Errorf("file %q: bad glob %q: %v", cfg.Stage, path, err)
	}
	// Build one codec now so that a bad format fails at start.
	if _, err := newCodec(cfg, cfg.Schema); err != nil {
		return nil, fmt.Errorf("file %q: %v", cfg.Stage, err)
	}
	return &fileSource{
		cfg: cfg, pattern: path, follow: cfg.Bool("follow"), poll: cfg.Duration("poll"), header: headerAttr(cfg),
		atEnd: cfg.String("start") == "end", batch: int(cfg.Int("batch")), known: map[string]bool{},
	}, nil
}

// mine reports whether path belongs to this task.
func (s *fileSource) mine(path string) bool {
	if s.cfg.Tasks <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(path))
	return int(h.Sum32()%uint32(s.cfg.Tasks)) == s.cfg.Task
}

// scan adds files newly matching the pattern.
func (s *fileSource) scan() error {
	matches, err := filepath.Glob(s.pattern)
	if err != nil {
		return fmt.Errorf("file %q: %v", s.cfg.Stage, err)
	}
	slices.Sort(matches)
	for _, p := range matches {
		p = filepath.Clean(p)
		if s.known[p] || !s.mine(p) {
			continue
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		s.known[p] = true
		tf, err := s.open(p)
		if err != nil {
			return err
		}
		s.files = append(s.files, tf)
		s.lag.note(p, tf.off)
	}
	return nil
}

// open opens path at its resume position.
func (s *fileSource) open(path string) (*tailFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("file %q: %v", s.cfg.Stage, err)
	}
	c, err := newCodec(s.cfg, s.cfg.Schema)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("file %q: %v", s.cfg.Stage, err)
	}
	_, csv := c.(codec.HeaderCodec)
	headed := csv && s.header != headerFalse
	tf := &tailFile{path: path, f: f, codec: c, line: 1, headed: headed, headerDue: headed}
	var start int64
	if off, ok := s.resume.Resume(path, ""); ok {
		start = off
	} else if s.atEnd && !s.opened {
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("file %q: %v", s.cfg.Stage, err)
		}
		start = st.Size()
	}
	if start > 0 {
		// Reading from the middle: count the lines before, and read the
		// header row there, so that a resumed file knows its columns.
		lines, first, err := scanPrefix(f, start, tf.headerDue)
		if err == nil && first != nil {
			tf.headerDue = false
			_, err = takeHeader(c.(codec.HeaderCodec), s.header, first)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("file %q: %s: %v", s.cfg.Stage, path, err)
		}
		tf.line += lines
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("file %q: %v", s.cfg.Stage, err)
	}
	tf.off = start
	return tf, nil
}

// scanPrefix reads f up to offset end: it returns the number of newlines
// there and, when first is set, the first non-blank line (without its line
// terminator; nil if there is none).
func scanPrefix(f *os.File, end int64, first bool) (int64, []byte, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, end), 64<<10)
	var lines int64
	var head []byte
	for first {
		b, err := r.ReadBytes('\n')
		if err == nil {
			lines++
		}
		if t := trimEOL(b); len(bytes.TrimSpace(t)) > 0 {
			head, first = t, false
		}
		if err == io.EOF {
			return lines, head, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if err == io.EOF {
			return lines, head, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// trimEOL returns line without its line terminator (\n or \r\n).
func trimEOL(line []byte) []byte {
	return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
}

// Open implements stdlib.Source.
func (s *fileSource) Open(ctx context.Context, resume stdlib.Resumer) error {
	s.resume = resume
	if err := s.scan(); err != nil {
		return err
	}
	s.opened = true
	if len(s.known) == 0 && !s.follow && s.cfg.Task == 0 {
		if matches, _ := filepath.Glob(s.pattern); len(matches) == 0 {
			return fmt.Errorf("file %q: no file matches %q", s.cfg.Stage, s.pattern)
		}
	}
	return nil
}

// Read implements stdlib.Source.
func (s *fileSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.cur < len(s.files) {
			tf := s.files[s.cur]
			recs, err := s.readFile(tf)
			if err != nil {
				return nil, err
			}
			if len(recs) > 0 {
				s.idle = 0
				s.lag.note(tf.path, recs[len(recs)-1].Pos.Offset)
				return recs, nil
			}
			if !s.follow {
				tf.f.Close()
				s.cur++
				continue
			}
			// Following: try the next file; after a full round without
			// data, wait and look for new files.
			s.cur = (s.cur + 1) % len(s.files)
			s.idle++
			if s.idle < len(s.files) {
				continue
			}
		} else if !s.follow {
			return nil, stdlib.ErrEndOfInput
		}
		s.idle = 0
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		if err := s.scan(); err != nil {
			return nil, err
		}
		for _, tf := range s.files {
			tf.eof = false
		}
	}
}

// readFile returns the next batch of complete lines of tf, or none at its
// end. A final line without a newline counts at the end of a file that is
// not followed.
func (s *fileSource) readFile(tf *tailFile) ([]stdlib.Record, error) {
	if s.follow {
		if err := tf.checkTruncated(); err != nil {
			return nil, fmt.Errorf("file %q: %v", s.cfg.Stage, err)
		}
	}
	for !tf.eof && tf.lines < s.batch {
		if err := tf.fill(); err != nil {
			return nil, fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
		}
	}
	// One copy of the batch's bytes backs every record's Raw.
	data := tf.buf
	n := 0
	end := 0
	newlines := 0
	for n < s.batch {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			if tf.eof && !s.follow && end < len(data) {
				end = len(data)
				n++
			}
			break
		}
		end += i + 1
		n++
		newlines++
	}
	if end == 0 {
		return nil, nil
	}
	chunk := bytes.Clone(data[:end])
	recs := s.cfg.Recycler.Batch(n)[:0]
	for start := 0; start < len(chunk); tf.line++ {
		i := bytes.IndexByte(chunk[start:], '\n')
		stop := len(chunk)
		if i >= 0 {
			stop = start + i + 1
		}
		line := trimEOL(chunk[start:stop])
		at := tf.off + int64(start)
		pos := stdlib.Position{Source: s.cfg.Stage, Partition: tf.path, Offset: tf.off + int64(stop)}
		start = stop
		if len(bytes.TrimSpace(line)) == 0 {
			// Blank lines carry no record; their bytes are covered by the
			// next record's offset. So does a header row.
			continue
		}
		if tf.headerDue {
			tf.headerDue = false
			isHeader, err := takeHeader(tf.codec.(codec.HeaderCodec), s.header, line)
			if err != nil {
				return nil, fmt.Errorf("file %q: %v", s.cfg.Stage, lineError(tf.path, tf.line, at, err))
			}
			if isHeader {
				continue
			}
		}
		recs = append(recs, stdlib.Record{Partition: -1, Pos: pos, Raw: line, Line: tf.line, Start: at})
	}
	s.decode(tf, recs, len(recs)/minDecodePart)
	tf.buf = tf.buf[end:]
	tf.off += int64(end)
	tf.lines -= newlines
	if len(recs) == 0 {
		// Only blank lines: report progress through an empty read.
		return s.readFile(tf)
	}
	return recs, nil
}

// minDecodePart is the fewest records per goroutine worth decoding a
// batch in parallel for; goroutines take decodeChunk records at a time.
const (
	minDecodePart = 256
	decodeChunk   = 64
)

// decode decodes recs[i].Raw into recs[i].Value (or Err) on up to parts
// goroutines, one codec each, when the format allows several codecs per
// file (every format but csv, whose header row's columns live in the
// file's codec).
func (s *fileSource) decode(tf *tailFile, recs []stdlib.Record, parts int) {
	if _, hc := tf.codec.(codec.HeaderCodec); hc {
		parts = 1
	}
	parts = max(1, min(parts, runtime.GOMAXPROCS(0), 4))
	for len(tf.codecs) < parts-1 {
		c, err := newCodec(s.cfg, s.cfg.Schema)
		if err != nil { // the first codec was built the same way
			parts = len(tf.codecs) + 1
			break
		}
		tf.codecs = append(tf.codecs, c)
	}
	if parts == 1 {
		tf.decodeRecords(recs, tf.codec)
		return
	}
	// Goroutines take chunks of records in turn, so that one that gets
	// less of a core still finishes with the others.
	chunks := (len(recs) + decodeChunk - 1) / decodeChunk
	var next atomic.Int64
	work := func(c codec.Codec) {
		for k := int(next.Add(1) - 1); k < chunks; k = int(next.Add(1) - 1) {
			lo, hi := k*decodeChunk, min((k+1)*decodeChunk, len(recs))
			tf.decodeRecords(recs[lo:hi], c)
		}
	}
	var wg sync.WaitGroup
	for _, c := range tf.codecs[:parts-1] {
		wg.Go(func() { work(c) })
	}
	work(tf.codec)
	wg.Wait()
}

// decodeRecords decodes each record's Raw with c. Raw is a line (at
// r.Line, starting at r.Start) of the batch's own copy of the file's bytes,
// never written again.
func (tf *tailFile) decodeRecords(recs []stdlib.Record, c codec.Codec) {
	od, owned := c.(codec.OwnedDecoder)
	for i := range recs {
		r := &recs[i]
		var v map[string]any
		var err error
		if owned {
			v, err = od.DecodeOwned(r.Raw)
		} else {
			v, err = c.Decode(r.Raw)
		}
		if err != nil {
			r.Err = lineError(tf.path, r.Line, r.Start, err)
		} else {
			r.Value = v
		}
	}
}

// fill reads more of the file into buf.
func (tf *tailFile) fill() error {
	// buf is a window of base. Records never alias it (a batch copies its
	// bytes), so the unconsumed bytes move to the front of base when the
	// room after them gets short, or to a larger base when they fill it.
	switch {
	case len(tf.base) == 0:
		tf.base = make([]byte, 2*readChunk)
		tf.buf = tf.base[:0]
	case len(tf.buf) == 0:
		tf.buf = tf.base[:0]
	case cap(tf.buf)-len(tf.buf) < readChunk/2:
		if len(tf.buf)+readChunk > len(tf.base) {
			tf.base = make([]byte, max(2*len(tf.buf), readChunk)+readChunk)
		}
		tf.buf = tf.base[:copy(tf.base, tf.buf)]
	}
	n, err := tf.f.Read(tf.buf[len(tf.buf):cap(tf.buf)])
	tf.lines += bytes.Count(tf.buf[len(tf.buf):len(tf.buf)+n], []byte{'\n'})
	tf.buf = tf.buf[:len(tf.buf)+n]
	if errors.Is(err, io.EOF) || (n == 0 && err == nil) {
		tf.eof = true
		return nil
	}
	return err
}

// checkTruncated restarts a followed file that shrank below the read
// offset (truncated in place, as copytruncate rotation does).
func (tf *tailFile) checkTruncated() error {
	st, err := tf.f.Stat()
	if err != nil {
		return err
	}
	if read := tf.off + int64(len(tf.buf)); st.Size() < read {
		if _, err := tf.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		tf.off, tf.buf, tf.eof, tf.lines, tf.line, tf.headerDue = 0, tf.buf[:0], false, 0, 1, tf.headed
	}
	return nil
}

// Commit implements stdlib.Source; files need no commit.
func (s *fileSource) Commit(context.Context, []stdlib.Position) error { return nil }

// Close implements stdlib.Source.
func (s *fileSource) Close(context.Context) error {
	for _, tf := range s.files {
		tf.f.Close()
	}
	return nil
}
