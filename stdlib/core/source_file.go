package core

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
)

func init() { stdlib.MustRegister(FileSourceSpec) }

// FileSourceSpec is the file source: records from files, one per line.
var FileSourceSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "file",
	Summary: "records from local files (JSON lines, CSV, raw lines, JSON Schema-validated JSON, length-delimited Protobuf or Avro container files); a path or glob; resumes at byte offsets, follows renamed and copied files",
	Params: append([]stdlib.Param{
		{Name: "path", Type: stdlib.String, Required: true, Doc: "a file, or a glob (*, ?, [...]) of files, read in path order; each file's content is a partition (see fingerprint_bytes), spread over the tasks by a hash of its first line (csv with a header, true or auto: its first two lines)"},
		{Name: "format", Type: stdlib.Enum("json", "csv", "lines", "debezium", "json_schema", "protobuf", "avro"), Default: stdlib.Ident("json"),
			Doc: "json: one object per line; csv: one row per line; lines: each line as {value: string}, which takes no schema; debezium: a Debezium change event (JSON) per line, read as its row with the operation in __op; json_schema: json validated against the schema's JSON Schema; protobuf: length-delimited binary messages (each a varint length, then the message) of the schema's .proto message; avro: an Avro object container file, its records resolved against the schema by field name"},
		{Name: "follow", Type: stdlib.Bool, Default: false, Doc: "keep reading data appended to the files (and files newly matching the glob), polling every poll; the source then never ends. Rotation is followed, by rename or copytruncate, when the glob matches the rotated files too"},
		{Name: "poll", Type: stdlib.Duration, Default: 250 * time.Millisecond, Doc: "how often a followed file is checked for new data"},
		{Name: "start", Type: stdlib.Enum("beginning", "end"), Default: stdlib.Ident("beginning"), Doc: "where a file present at start and without a stored position is read from: its beginning, or its end (only data appended later); files appearing later are read from their beginning"},
		{Name: "fingerprint_bytes", Type: stdlib.Size, Default: int64(defaultFingerprint), Doc: "how many leading bytes identify a file (1 to 1MiB): a file renamed, moved or copied keeps its position, a file replaced by one with other leading bytes is read from its beginning, and files with the same leading bytes are one file. A file shorter than this is known by its device and inode as well, until it grows this long"},
		batchParam,
	}, textSourceParams...),
	Bounded: true,
	Schema:  true,
	Meta:    []stdlib.MetaField{stdlib.MetaOffset},
	Output:  stdlib.RawOutput,
	Check: func(attrs map[string]any) []stdlib.AttrError {
		errs := append(checkTextSource(attrs), stdlib.Positive(attrs, "poll")...)
		if n, ok := attrs["fingerprint_bytes"].(int64); ok && (n < 1 || n > maxFingerprint) {
			errs = append(errs, stdlib.AttrError{Attr: "fingerprint_bytes", Message: fmt.Sprintf("fingerprint_bytes must be between 1 and 1MiB, not %d", n)})
		}
		return errs
	},
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newFileSource(cfg)
	},
}

// readChunk is how much a file read asks for.
const readChunk = 256 << 10

// fileSource is one task of a file source stage.
//
// Its partitions are files' contents ([fileStream]), not paths: each file
// found is matched against the partitions stored when the run started and
// those read since, by its leading bytes (and inode, for a partition made
// while its file was short), and continues the one it holds, from whatever
// path. A followed file that is truncated or rewritten loses its partition
// to a copy of it (copytruncate rotation) and is read again as new content.
type fileSource struct {
	// delimited: the messages are length-delimited (protobuf), not lines;
	// ocf: the file is an Avro object container file.
	delimited, ocf bool
	cfg            stdlib.Config
	log            *slog.Logger
	pattern        string
	follow         bool
	poll           time.Duration
	atEnd          bool
	batch          int
	fpBytes        int64 // fingerprint_bytes
	lead           int   // leading lines that assign a file to a task
	resume         stdlib.Resumer
	opened         bool       // Open has scanned: later files start at their beginning
	header         headerMode // csv: whether files start with a header row

	streams []*fileStream         // partitions: stored when the run started, or made in it
	files   []*tailFile           // this task's open files, in the order found
	open    map[fileKey]*tailFile // files by device and inode
	later   map[fileKey]int64     // files left alone (another task's, or without a complete line), by their size then
	cur     int                   // index of the file being read
	idle    int                   // files found without data in a row

	lag fileLag // what was read of each file, for Lag
}

// maxFingerprint bounds fingerprint_bytes.
const maxFingerprint = 1 << 20

// tailFile is one file being read.
type tailFile struct {
	path  string
	f     *os.File
	key   fileKey
	st    *fileStream // the partition read; nil while the file waits as a copy of one read from another file
	next  *fileStream // the partition st continues as from offset limit on
	limit int64
	size  int64 // the file's size when last checked
	dead  bool  // closed
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
	// ocf reads an Avro object container file once its header is read;
	// skip records of the next block were read before a restart.
	ocf  *avro.Reader
	skip int

	codecs []codec.Codec // more codecs, to decode parts of a batch in parallel
	// rows[i] turns what codec i (0: codec, then codecs) decodes into
	// rows, when the executor takes rows and the codec can; nil otherwise.
	rows []*stdlib.RowDecoder
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
	c, err := fileCodec(cfg)
	if err != nil {
		return nil, fmt.Errorf("file %q: %v", cfg.Stage, err)
	}
	header := headerAttr(cfg)
	fp := cfg.Int("fingerprint_bytes")
	lead := 1
	if _, ok := c.(codec.HeaderCodec); ok && header != headerFalse {
		lead = 2 // a header row is the same in many files
	}
	log := cfg.Log()
	return &fileSource{
		delimited: cfg.String("format") == "protobuf", ocf: cfg.String("format") == "avro",
		cfg: cfg, log: log, pattern: path, follow: cfg.Bool("follow"), poll: cfg.Duration("poll"), header: header,
		atEnd: cfg.String("start") == "end", batch: int(cfg.Int("batch")), fpBytes: fp, lead: lead,
		open: map[fileKey]*tailFile{}, later: map[fileKey]int64{},
	}, nil
}

// mine reports whether a file whose leading lines are lead belongs to this
// task. The lines are the same wherever the file is, renamed or copied, so
// that one task reads a partition from whichever file holds it.
func (s *fileSource) mine(lead []byte) bool {
	if s.cfg.Tasks <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write(lead)
	return int(h.Sum32()%uint32(s.cfg.Tasks)) == s.cfg.Task
}

// leading returns the first n lines of head, the start of a file. A file
// without n complete lines is not placed yet, unless head is all there is
// to go by: fingerprint_bytes long, or a file read once to its end.
func leading(head []byte, n int, all bool) ([]byte, bool) {
	end := 0
	for range n {
		i := bytes.IndexByte(head[end:], '\n')
		if i < 0 {
			return head, all && len(head) > 0
		}
		end += i + 1
	}
	return head[:end], true
}

// scan takes the files newly matching the pattern, follows renamed ones
// and, when following, closes the files gone from the pattern once read.
func (s *fileSource) scan() error {
	matches, err := filepath.Glob(s.pattern)
	if err != nil {
		return fmt.Errorf("file %q: %v", s.cfg.Stage, err)
	}
	slices.Sort(matches)
	seen := map[fileKey]bool{}
	for _, p := range matches {
		p = filepath.Clean(p)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		k := keyOf(fi)
		seen[k] = true
		if tf := s.open[k]; tf != nil {
			tf.path = p // renamed: it keeps its partition
			continue
		}
		if size, ok := s.later[k]; ok && size == fi.Size() {
			continue
		}
		if err := s.take(p, k); err != nil {
			return err
		}
	}
	for k := range s.later {
		if !seen[k] {
			delete(s.later, k)
		}
	}
	if s.follow {
		for _, tf := range s.files {
			if !seen[tf.key] && (tf.st == nil || tf.eof) {
				s.drop(tf)
			}
		}
	}
	s.files = slices.DeleteFunc(s.files, func(tf *tailFile) bool { return tf.dead })
	if s.cur >= len(s.files) {
		s.cur = 0
	}
	return nil
}

// take opens a file newly matching the pattern, unless it is another
// task's or has no complete line yet, and places it.
func (s *fileSource) take(path string, k fileKey) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // gone since the glob
	}
	fi, err := f.Stat()
	if err != nil || keyOf(fi) != k {
		f.Close()
		return nil // replaced since the glob: the next scan sees it
	}
	head := make([]byte, min(fi.Size(), s.fpBytes))
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return fmt.Errorf("file %q: %s: %v", s.cfg.Stage, path, err)
	}
	lead, ok := leading(head[:n], s.lead, int64(n) == s.fpBytes || !s.follow)
	if !ok || !s.mine(lead) {
		f.Close()
		s.later[k] = fi.Size()
		return nil
	}
	c, err := fileCodec(s.cfg)
	if err != nil {
		f.Close()
		return fmt.Errorf("file %q: %v", s.cfg.Stage, err)
	}
	_, csv := c.(codec.HeaderCodec)
	tf := &tailFile{path: path, f: f, key: k, codec: c, limit: -1, headed: csv && s.header != headerFalse}
	s.open[k] = tf
	s.files = append(s.files, tf)
	return s.attach(tf)
}

// attach finds the partition tf holds and positions tf in it: a partition
// its content continues (stored, or read from another file before), else a
// new one. A file holding a partition read from another file now waits:
// it is a copy, read if that file is truncated or goes away.
func (s *fileSource) attach(tf *tailFile) error {
	fi, err := tf.f.Stat()
	if err != nil {
		return fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
	}
	size := fi.Size()
	px := &prefixes{f: tf.f, size: size}
	st, err := s.match(tf, px)
	if err != nil {
		return fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
	}
	if st != nil && st.file != nil {
		return nil
	}
	var start int64
	switch {
	case st == nil || st.legacy:
		// A new partition, or one stored before identities.
		id := fileID{n: min(size, s.fpBytes)}
		if id.sum, _, err = px.sum(id.n); err != nil {
			return fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
		}
		if id.n < s.fpBytes {
			id.bound, id.key = true, tf.key
		}
		if st == nil {
			st = newStream(streamName(tf.path, id), id)
			s.replaced(tf.path)
			s.streams = append(s.streams, st)
		} else {
			st.id, st.ident, st.legacy = id, id.String(), false
		}
		start = s.resumeStream(tf, st, size)
	case !st.resumed:
		start = s.resumeStream(tf, st, size)
	default:
		// Read from another file before, which was renamed away or
		// truncated after this copy was made: this one continues it.
		tf.st, start = st, st.off
		log := s.log.Info
		if !s.follow {
			log = s.log.Warn // not a rotation: the files may differ
		}
		log("file continues a partition read from another file, whose first bytes it has (renamed or copied); raise fingerprint_bytes if they are different files",
			"file", tf.path, "partition", st.name, "offset", start)
	}
	tf.st.file = tf
	if tf.next != nil {
		tf.next.file = tf
	}
	tf.line, tf.headerDue = 1, tf.headed
	if s.ocf && start > 0 {
		if start, err = tf.ocfResume(s.cfg.Schema, start); err != nil {
			return fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
		}
	} else if start > 0 {
		// Reading from the middle: count the lines before, and read the
		// header row there, so that a resumed file knows its columns.
		lines, first, err := scanPrefix(tf.f, start, tf.headerDue)
		if err == nil && first != nil {
			tf.headerDue = false
			_, err = takeHeader(tf.codec.(codec.HeaderCodec), s.header, first)
		}
		if err != nil {
			return fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
		}
		tf.line += lines
	}
	if _, err := tf.f.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("file %q: %v", s.cfg.Stage, err)
	}
	tf.off, tf.size, tf.st.off = start, size, start
	tf.buf, tf.lines, tf.eof = tf.buf[:0], 0, false
	s.lag.note(tf.path, tf.st.name, start)
	return nil
}

// replaced logs that a new partition starts at a path where another file
// was read before (stored with its name): the file there was replaced.
func (s *fileSource) replaced(path string) {
	for _, st := range s.streams {
		if !st.resumed && (st.name == path || strings.HasPrefix(st.name, path+"#")) {
			s.log.Info("file is not the one read there before (its first bytes differ): read from its beginning", "file", path, "partition_before", st.name)
			return
		}
	}
}

// match returns the partition the file holds, or nil: of the partitions it
// holds, one known by content wins over one bound to an inode (the file
// outgrew it), then the one stored further.
func (s *fileSource) match(tf *tailFile, px *prefixes) (*fileStream, error) {
	var best *fileStream
	for _, st := range s.streams {
		if st.done {
			continue
		}
		var ok bool
		var err error
		switch {
		case st.legacy:
			// Stored before identities, by path: the file now there, if
			// the position still ends a line in it.
			ok = st.name == tf.path
			if ok {
				ok, err = px.endsLine(st.stored)
			}
		case st.id.bound && st.stored > px.size:
			// Shorter than what was read: truncated since.
		default:
			ok, err = px.matches(st.id, tf.key)
		}
		if err != nil {
			return nil, err
		}
		if ok && (best == nil || best.id.bound && !st.id.bound || best.id.bound == st.id.bound && st.stored > best.stored) {
			best = st
		}
	}
	return best, nil
}

// resumeStream asks where st resumes, sets the partitions tf reads and
// returns the offset it reads from. A partition that continues another
// from an offset (fileID.from) and is not in the checkpoint store first
// reads the rest of the one it continues (which the sinks may hold less
// of): every record keeps the partition it had.
func (s *fileSource) resumeStream(tf *tailFile, st *fileStream, size int64) int64 {
	off, ok := s.resume.Resume(st.name, st.ident)
	st.resumed, tf.st = true, st
	switch {
	case ok:
		return max(off, st.id.from)
	case st.id.from > 0:
		prev := s.stream(strings.TrimSuffix(st.name, "+"))
		if prev == nil || prev.resumed || prev.done {
			return st.id.from
		}
		poff, pok := s.resume.Resume(prev.name, prev.ident)
		prev.resumed, prev.done = true, true // read only up to st
		if !pok {
			poff = 0
		}
		if poff >= st.id.from {
			return st.id.from
		}
		st.off = st.id.from
		tf.st, tf.next, tf.limit = prev, st, st.id.from
		return poff
	case s.atEnd && !s.opened:
		return size
	}
	return 0
}

// stream returns the partition named name, or nil.
func (s *fileSource) stream(name string) *fileStream {
	for _, st := range s.streams {
		if st.name == name {
			return st
		}
	}
	return nil
}

// promote gives a file read for a partition bound to its inode a partition
// known by its content alone, once it has fingerprint_bytes bytes and was
// read past every position stored for the old one: the records read so far
// keep the old partition, the next ones get the new, which continues it
// from here. A copy of the file (copytruncate) then finds its partition.
func (s *fileSource) promote(tf *tailFile) error {
	px := &prefixes{f: tf.f, size: tf.size}
	sum, ok, err := px.sum(s.fpBytes)
	if err != nil || !ok {
		return err
	}
	old := tf.st
	st := newStream(old.name+"+", fileID{sum: sum, n: s.fpBytes, from: tf.off})
	st.resumed, st.off, st.file = true, tf.off, tf
	if prev := s.stream(st.name); prev != nil {
		prev.done = true // made for other content: the executor tells them apart
	}
	s.streams = append(s.streams, st)
	// Its records start here, after any position stored for it.
	s.resume.Resume(st.name, st.ident)
	old.file, old.done = nil, true
	tf.st = st
	return nil
}

// check reports whether a followed file still holds its partition: not
// when it shrank below what was read or its leading bytes changed
// (truncated, as copytruncate rotation does, or rewritten in place).
func (s *fileSource) check(tf *tailFile) (bool, error) {
	fi, err := tf.f.Stat()
	if err != nil {
		return false, err
	}
	size := fi.Size()
	if size == tf.size {
		return true, nil
	}
	if size < tf.off+int64(len(tf.buf)) {
		return false, nil
	}
	px := &prefixes{f: tf.f, size: size}
	sum, ok, err := px.sum(tf.st.id.n)
	if err != nil || !ok || sum != tf.st.id.sum {
		return false, err
	}
	tf.size = size
	return true, nil
}

// lose closes a followed file that no longer holds its partition. A
// partition known by content waits for a copy of the file to continue it;
// one bound to the inode ends. The next scan finds the file again, as new
// content.
func (s *fileSource) lose(tf *tailFile) {
	for _, st := range []*fileStream{tf.st, tf.next} {
		if st != nil && st.id.bound {
			st.done = true
		}
	}
	if tf.next != nil {
		tf.st.done = true // read only up to next
	}
	s.log.Info("file truncated or rewritten: read again from its beginning", "file", tf.path, "partition", tf.st.name, "offset", tf.off)
	s.drop(tf)
}

// drop closes tf; its partitions wait for another file.
func (s *fileSource) drop(tf *tailFile) {
	for _, st := range []*fileStream{tf.st, tf.next} {
		if st != nil && st.file == tf {
			st.file = nil
		}
	}
	delete(s.open, tf.key)
	tf.f.Close()
	tf.dead = true
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
	if l, ok := resume.(stdlib.PositionLister); ok {
		s.streams = storedStreams(s.cfg.Stage, l.StoredPositions())
	}
	if err := s.scan(); err != nil {
		return err
	}
	s.opened = true
	if len(s.files) == 0 && !s.follow && s.cfg.Task == 0 {
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
				s.lag.note(tf.path, tf.st.name, recs[len(recs)-1].Pos.Offset)
				return recs, nil
			}
			if !s.follow {
				if !tf.dead {
					s.drop(tf)
				}
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

// ready prepares tf for a read and reports whether there may be something
// to read: it places a waiting copy, checks that a followed file still
// holds its partition, moves on to the partition the current one
// continues as, and promotes a partition bound to the inode.
func (s *fileSource) ready(tf *tailFile) (bool, error) {
	if tf.dead {
		return false, nil
	}
	if tf.st == nil {
		if err := s.attach(tf); err != nil || tf.st == nil {
			return false, err
		}
	}
	if s.follow {
		ok, err := s.check(tf)
		if err != nil {
			return false, fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
		}
		if !ok {
			s.lose(tf)
			return false, nil
		}
	}
	if tf.next != nil && tf.off >= tf.limit {
		tf.st.file, tf.st, tf.next, tf.limit = nil, tf.next, nil, -1
	}
	if tf.next == nil && tf.st.id.bound && tf.size >= s.fpBytes && tf.off >= tf.st.stored {
		if err := s.promote(tf); err != nil {
			return false, fmt.Errorf("file %q: %s: %v", s.cfg.Stage, tf.path, err)
		}
	}
	return true, nil
}

// within reports whether the n bytes from tf's offset belong to its
// current partition.
func (tf *tailFile) within(n int) bool {
	return tf.next == nil || tf.off+int64(n) <= tf.limit
}

// readFile returns the next batch of complete lines of tf, or none at its
// end. A final line without a newline counts at the end of a file that is
// not followed.
func (s *fileSource) readFile(tf *tailFile) ([]stdlib.Record, error) {
	if ok, err := s.ready(tf); !ok || err != nil {
		return nil, err
	}
	for !tf.eof && s.wantMore(tf) {
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
		i := s.frameEnd(tf, data[end:], tf.off+int64(end))
		if i < 0 {
			if tf.eof && !s.follow && end < len(data) && tf.within(len(data)) {
				end = len(data)
				n++
			}
			break
		}
		if !tf.within(end + i + 1) {
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
	if s.ocf {
		return s.ocfRead(tf, chunk)
	}
	recs := s.cfg.Recycler.Batch(n)[:0]
	for start := 0; start < len(chunk); tf.line++ {
		i := s.frameEnd(tf, chunk[start:], tf.off+int64(start))
		stop := len(chunk)
		if i >= 0 {
			stop = start + i + 1
		}
		var line []byte
		if s.delimited {
			line = framePayload(chunk[start:stop])
		} else {
			line = trimEOL(chunk[start:stop])
		}
		at := tf.off + int64(start)
		pos := stdlib.Position{Source: s.cfg.Stage, Partition: tf.st.name, Offset: tf.off + int64(stop)}
		start = stop
		if !s.delimited && len(bytes.TrimSpace(line)) == 0 {
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
	tf.st.off = tf.off
	if s.delimited {
		newlines = bytes.Count(data[:end], []byte{'\n'})
	}
	tf.lines -= newlines
	if len(recs) == 0 {
		// Only blank lines: report progress through an empty read.
		return s.readFile(tf)
	}
	return recs, nil
}

// frameEnd returns the index in data, which starts at offset at of tf,
// of the last byte of its first message (a line, a length-delimited
// message, an Avro header or block), or -1 when data does not hold a whole
// one.
func (s *fileSource) frameEnd(tf *tailFile, data []byte, at int64) int {
	if s.ocf {
		return tf.ocfFrameEnd(data, at, s.cfg.Schema)
	}
	if !s.delimited {
		return bytes.IndexByte(data, '\n')
	}
	n, k := binary.Uvarint(data)
	if k <= 0 || uint64(len(data)-k) < n {
		return -1
	}
	return k + int(n) - 1
}

// framePayload returns the message of a length-delimited frame: what
// follows the length, all of it when the frame is cut short (at the end of
// a file), which then fails to decode.
func framePayload(frame []byte) []byte {
	n, k := binary.Uvarint(frame)
	if k <= 0 {
		return frame
	}
	if uint64(len(frame)-k) < n {
		return frame[k:]
	}
	return frame[k : k+int(n)]
}

// maxDelimitedFill is how many bytes of length-delimited messages a read
// gathers at most before it takes the whole ones it has.
const maxDelimitedFill = 1 << 20

// wantMore reports whether tf's buffer lacks a batch: batch lines, or for
// length-delimited messages, batch whole ones within maxDelimitedFill
// bytes (or a first whole one, however long).
func (s *fileSource) wantMore(tf *tailFile) bool {
	if !s.delimited && !s.ocf {
		return tf.lines < s.batch
	}
	data, n := tf.buf, 0
	for n < s.batch {
		i := s.frameEnd(tf, data, tf.off+int64(len(tf.buf)-len(data)))
		if i < 0 {
			return n == 0 || len(tf.buf) < maxDelimitedFill
		}
		data = data[i+1:]
		n++
	}
	return false
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
	if s.cfg.Rows && len(tf.rows) < parts {
		for i := len(tf.rows); i < parts; i++ {
			c := tf.codec
			if i > 0 {
				c = tf.codecs[i-1]
			}
			var rd *stdlib.RowDecoder
			if fc, ok := c.(codec.FieldsCodec); ok && fc.Fields() {
				rd = stdlib.NewRowDecoder(fc, nil)
			}
			tf.rows = append(tf.rows, rd)
		}
	}
	rows := func(i int) *stdlib.RowDecoder {
		if i < len(tf.rows) {
			return tf.rows[i]
		}
		return nil
	}
	if parts == 1 {
		tf.decodeRecords(recs, tf.codec, rows(0))
		return
	}
	// Goroutines take chunks of records in turn, so that one that gets
	// less of a core still finishes with the others.
	chunks := (len(recs) + decodeChunk - 1) / decodeChunk
	var next atomic.Int64
	work := func(c codec.Codec, rd *stdlib.RowDecoder) {
		for k := int(next.Add(1) - 1); k < chunks; k = int(next.Add(1) - 1) {
			lo, hi := k*decodeChunk, min((k+1)*decodeChunk, len(recs))
			tf.decodeRecords(recs[lo:hi], c, rd)
		}
	}
	var wg sync.WaitGroup
	for i, c := range tf.codecs[:parts-1] {
		wg.Go(func() { work(c, rows(i+1)) })
	}
	work(tf.codec, rows(0))
	wg.Wait()
}

// decodeRecords decodes each record's Raw with c, or into a row with rd
// when it is not nil. Raw is a line (at r.Line, starting at r.Start) of
// the batch's own copy of the file's bytes, never written again.
func (tf *tailFile) decodeRecords(recs []stdlib.Record, c codec.Codec, rd *stdlib.RowDecoder) {
	if rd != nil {
		for i := range recs {
			r := &recs[i]
			if v, err := rd.Decode(r.Raw); err != nil {
				r.Err = lineError(tf.path, r.Line, r.Start, err)
			} else {
				r.Value = v
			}
		}
		return
	}
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

// Commit implements stdlib.Source; files need no commit.
func (s *fileSource) Commit(context.Context, []stdlib.Position) error { return nil }

// Close implements stdlib.Source.
func (s *fileSource) Close(context.Context) error {
	for _, tf := range s.files {
		if !tf.dead {
			tf.f.Close()
		}
	}
	return nil
}
