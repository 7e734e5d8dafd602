package core

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"pipe.dev/pipe/internal/durable"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
)

func init() { stdlib.MustRegister(FileSinkSpec) }

// FileSinkSpec is the file sink: records to local files, one per line.
var FileSinkSpec = &stdlib.Spec{
	Kind:    stdlib.SinkKind,
	Name:    "file",
	Summary: "records to local files, one per line (JSON lines, CSV or raw lines) or framed (Protobuf, Avro container files); rotation by size or time; exactly once (Avro: at least once)",
	Params: append([]stdlib.Param{
		{Name: "path", Type: stdlib.String, Required: true, Doc: fileSinkPathDoc},
		{Name: "format", Type: stdlib.Enum("json", "csv", "lines", "avro", "debezium", "json_schema", "protobuf"), Default: stdlib.Ident("json"), Doc: "json: one object per line; csv: one row per line (a header row opens each file when header = true); lines: the record's value field as text; avro: an Avro object container file whose schema is derived from the records' type (at least once); debezium: a change record (postgres_cdc) per line as Debezium's JSON envelope; json_schema: json validated against the schema's JSON Schema (a record that fails is a record error); protobuf: the schema's .proto message, binary, each prefixed by its varint length"},
		{Name: "rotate_size", Type: stdlib.Size, Default: int64(0), Doc: "start a new file before one would grow past this size; 0 never rotates by size"},
		{Name: "rotate_interval", Type: stdlib.Duration, Default: time.Duration(0), Doc: "start a new file when the current one has been open this long; 0 never rotates by time"},
	}, csvSinkParams...),
	Delivery:  []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Releases:  true,
	ReadsRows: true,
	Schema:    true,
	Check: func(attrs map[string]any) []stdlib.AttrError {
		var errs []stdlib.AttrError
		if n, ok := attrs["rotate_size"].(int64); ok && n < 0 {
			errs = append(errs, stdlib.AttrError{Attr: "rotate_size", Message: "rotate_size must not be negative"})
		}
		if d, ok := attrs["rotate_interval"].(time.Duration); ok && d < 0 {
			errs = append(errs, stdlib.AttrError{Attr: "rotate_interval", Message: "rotate_interval must not be negative"})
		}
		if p, ok := attrs["path"].(string); ok && (p == "" || strings.HasSuffix(p, "/")) {
			errs = append(errs, stdlib.AttrError{Attr: "path", Message: fmt.Sprintf("path %q does not name a file", p)})
		}
		if attrs["format"] == stdlib.Ident("avro") && attrs["delivery"] == stdlib.Ident(stdlib.ExactlyOnce) {
			errs = append(errs, stdlib.AttrError{Attr: "format", Message: "format avro is at least once: set delivery = at_least_once"})
		}
		return errs
	},
	CheckInput: func(attrs map[string]any, records *types.Type) []stdlib.AttrError {
		if attrs["format"] != stdlib.Ident("avro") {
			return stdlib.CheckDebeziumInput(attrs, records)
		}
		if _, err := avro.SchemaOf(records); err != nil {
			return []stdlib.AttrError{{Attr: "format", Message: "format avro: " + err.Error()}}
		}
		return nil
	},
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
		return newFileSink(cfg)
	},
}

const fileSinkPathDoc = `the output file. Without rotation a single task writes exactly this file; with rotate_size or rotate_interval the files are numbered before the extension (out/events.jsonl: out/events-000001.jsonl, out/events-000002.jsonl, ...). With tasks > 1 each task writes its own files, "-t<task>" added to the name (events-t0.jsonl or events-t0-000001.jsonl). The sink owns these names: it truncates them when it starts them afresh. Beside them it keeps a state file .<name>.pipe-sink.json recording how many bytes of which file are committed, a fingerprint of them and the source positions they cover; a run fails at start when that file is missing, shorter or different. Delete the state file to start the output afresh`

// flushSize is how much encoded data the sink buffers before writing.
const flushSize = 256 << 10

// fileSink is one task of a file sink stage.
//
// Exactly once: records are appended to the current file (buffered, not
// synced). On Checkpoint the file is synced, then the state file — the
// current file's sequence number, its committed length and the positions
// covered — is replaced atomically (write, sync, rename, sync the
// directory). That rename is the commit point: on Open, the current file
// is truncated back to the committed length, files numbered after it are
// removed, and the recorded positions are returned as held.
type fileSink struct {
	cfg      stdlib.Config
	sent     atomic.Int64 // bytes written (stdlib.ByteCounter)
	codec    codec.Codec
	exactly  bool
	csvHead  bool         // the format has a header row to write
	ocf      *avro.Writer // format = avro: buf holds bufN encoded records, written as one block
	bufN     int
	dir      string
	stem     string // file name without extension, task suffix included
	ext      string
	rotSize  int64
	rotEvery time.Duration
	rotating bool

	seq     int // current file's number; 0 without rotation
	f       *os.File
	size    int64 // bytes written to f
	opened  time.Time
	header  bool // a header row is due
	buf     []byte
	held    map[[2]string]stdlib.Position
	lastCP  uint64
	scratch []byte
	// delimited: each record is its varint length, then its encoding
	// (protobuf); frame is the scratch it is framed in.
	delimited bool
	frame     []byte
}

// sinkState is the state file's content.
type sinkState struct {
	Version int    `json:"version"`
	Seq     int    `json:"seq"`
	File    string `json:"file"`
	Size    int64  `json:"size"`
	// Fingerprint is a hash of the committed bytes' first and last
	// fingerprintSpan bytes (since version 2): the file holds what was
	// written to it.
	Fingerprint string            `json:"fingerprint,omitempty"`
	Opened      time.Time         `json:"opened"`
	Checkpoint  uint64            `json:"checkpoint"`
	Positions   []stdlib.Position `json:"positions"` // with their identities
}

// sinkStateVersion is the version of the state file written; version 1
// (without a fingerprint) is read too.
const sinkStateVersion = 2

// fingerprintSpan is how many bytes at each end of the committed part of
// a file its fingerprint covers: enough to tell a file replaced or
// rewritten, cheap to read at every checkpoint.
const fingerprintSpan = 4 << 10

func newFileSink(cfg stdlib.Config) (*fileSink, error) {
	path := cfg.String("path")
	if path == "" {
		return nil, fmt.Errorf("file %q: path is empty", cfg.Stage)
	}
	var ocf *avro.Writer
	var c codec.Codec
	var err error
	if cfg.String("format") == "avro" {
		if cfg.Delivery == stdlib.ExactlyOnce {
			return nil, fmt.Errorf("file %q: format avro is at least once: set delivery = at_least_once", cfg.Stage)
		}
		ocf, err = avro.NewWriter(cfg.RecordType())
		c = ocf
	} else {
		c, err = newCodec(cfg, cfg.RecordType())
	}
	if err != nil {
		return nil, fmt.Errorf("file %q: %v", cfg.Stage, err)
	}
	_, isCSV := c.(codec.HeaderCodec)
	s := &fileSink{
		delimited: cfg.String("format") == "protobuf",
		cfg:       cfg, codec: c, ocf: ocf, exactly: cfg.Delivery == stdlib.ExactlyOnce,
		csvHead: isCSV && cfg.Bool("header"),
		dir:     filepath.Dir(path), rotSize: cfg.Int("rotate_size"), rotEvery: cfg.Duration("rotate_interval"),
		held: map[[2]string]stdlib.Position{},
	}
	s.stem, s.ext = sinkStem(path, cfg.Tasks, cfg.Task)
	s.rotating = s.rotSize > 0 || s.rotEvery > 0
	return s, nil
}

// sinkStem returns the file name (without extension) and the extension of
// the files of one task of a file sink writing path.
func sinkStem(path string, tasks, task int) (stem, ext string) {
	base := filepath.Base(path)
	ext = filepath.Ext(base)
	stem = strings.TrimSuffix(base, ext)
	if tasks > 1 {
		stem += "-t" + strconv.Itoa(task)
	}
	return stem, ext
}

// name returns the path of file number seq.
func (s *fileSink) name(seq int) string {
	if !s.rotating {
		return filepath.Join(s.dir, s.stem+s.ext)
	}
	return filepath.Join(s.dir, fmt.Sprintf("%s-%06d%s", s.stem, seq, s.ext))
}

func (s *fileSink) statePath() string {
	return sinkStatePath(s.dir, s.stem, s.ext)
}

func sinkStatePath(dir, stem, ext string) string {
	return filepath.Join(dir, "."+stem+ext+".pipe-sink.json")
}

func (s *fileSink) errorf(format string, args ...any) error {
	return fmt.Errorf("file %q: %s", s.cfg.Stage, fmt.Sprintf(format, args...))
}

// Open implements stdlib.Sink.
func (s *fileSink) Open(ctx context.Context) ([]stdlib.Position, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, s.errorf("%v", err)
	}
	if err := durable.RemoveTemps(s.statePath()); err != nil {
		return nil, s.errorf("removing a partial state file: %v", err)
	}
	st, err := s.readState()
	if err != nil {
		return nil, err
	}
	var f *os.File
	if st == nil {
		// A new output: it holds nothing.
		st = &sinkState{Opened: time.Now()}
		if s.rotating {
			st.Seq = 1
		}
		f, err = os.OpenFile(s.name(st.Seq), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, s.errorf("%v", err)
		}
	} else if f, err = s.openCommitted(st); err != nil {
		return nil, err
	}
	s.seq, s.size, s.opened, s.lastCP = st.Seq, st.Size, st.Opened, st.Checkpoint
	for _, p := range st.Positions {
		s.held[[2]string{p.Source, p.Partition}] = p
	}
	if err := s.removeAfter(s.seq); err != nil {
		f.Close()
		return nil, err
	}
	// Drop whatever was written after the last commit.
	if err := f.Truncate(s.size); err != nil {
		f.Close()
		return nil, s.errorf("truncating %s: %v", f.Name(), err)
	}
	if _, err := f.Seek(s.size, 0); err != nil {
		f.Close()
		return nil, s.errorf("%v", err)
	}
	if s.ocf != nil && s.size > 0 {
		if err := s.ocf.Resume(io.NewSectionReader(f, 0, s.size)); err != nil {
			f.Close()
			return nil, s.errorf("appending to %s: %v", f.Name(), err)
		}
	}
	s.f = f
	s.header = s.csvHead && s.size == 0
	if !s.exactly {
		return nil, nil
	}
	return s.heldPositions(), nil
}

// openCommitted opens the file the state file names, once sure it holds
// what the state file says was committed to it: never extended, never
// written into another file.
func (s *fileSink) openCommitted(st *sinkState) (*os.File, error) {
	name := s.name(st.Seq)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, s.notCommitted(name, st, "is missing")
	}
	if err != nil {
		return nil, s.errorf("%v", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, s.errorf("%v", err)
	}
	if fi.Size() < st.Size {
		f.Close()
		return nil, s.notCommitted(name, st, fmt.Sprintf("has %d bytes", fi.Size()))
	}
	if st.Fingerprint != "" {
		fp, err := fileFingerprint(f, st.Size)
		if err != nil {
			f.Close()
			return nil, s.errorf("reading %s: %v", name, err)
		}
		if fp != st.Fingerprint {
			f.Close()
			return nil, s.notCommitted(name, st, "does not hold what was written to it")
		}
	}
	return f, nil
}

// notCommitted is the error for an output file that is not what its state
// file says was committed to it.
func (s *fileSink) notCommitted(name string, st *sinkState, what string) error {
	again := "delete " + s.statePath()
	switch {
	case s.exactly:
		again += " (the sink then holds nothing, and the sources read its partitions again)"
	case s.cfg.StateDir != "":
		again += " and the pipeline's state directory " + s.cfg.StateDir + " (for the sources to read everything again)"
	}
	return s.errorf("%s %s, but its state file %s records %d committed bytes of it: the output was deleted, truncated or replaced since. To start the output afresh, %s; to keep it, restore %s",
		name, what, s.statePath(), st.Size, again, name)
}

// fileFingerprint hashes the first and the last fingerprintSpan bytes of
// the first size bytes of f.
func fileFingerprint(f *os.File, size int64) (string, error) {
	h := sha256.New()
	head := min(size, fingerprintSpan)
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, head)); err != nil {
		return "", err
	}
	tail := max(head, size-fingerprintSpan)
	if _, err := io.Copy(h, io.NewSectionReader(f, tail, size-tail)); err != nil {
		return "", err
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil)[:16]), nil
}

func (s *fileSink) heldPositions() []stdlib.Position {
	out := make([]stdlib.Position, 0, len(s.held))
	for _, p := range s.held {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePositions)
	return out
}

func comparePositions(a, b stdlib.Position) int {
	return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Partition, b.Partition))
}

func (s *fileSink) readState() (*sinkState, error) {
	st, err := readSinkState(s.statePath())
	if err != nil || st == nil {
		return nil, err
	}
	if s.rotating != (st.Seq > 0) {
		return nil, s.errorf("state file %s was written with rotation %s; remove it (and the output) to change rotation", s.statePath(), map[bool]string{true: "on", false: "off"}[st.Seq > 0])
	}
	return st, nil
}

// readSinkState reads a state file; nil if there is none.
func readSinkState(path string) (*sinkState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st sinkState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %v", path, err)
	}
	if st.Version != 1 && st.Version != sinkStateVersion {
		return nil, fmt.Errorf("state file %s has version %d, want %d", path, st.Version, sinkStateVersion)
	}
	return &st, nil
}

// writeSinkState commits a state file (write, sync, rename, sync the
// directory).
func writeSinkState(path string, st *sinkState) error {
	st.Version = sinkStateVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(path, append(b, '\n'), 0o644)
}

// removeAfter removes the numbered files after seq: uncommitted rotations.
func (s *fileSink) removeAfter(seq int) error {
	if !s.rotating {
		return nil
	}
	matches, err := filepath.Glob(filepath.Join(s.dir, globEscape(s.stem)+"-[0-9][0-9][0-9][0-9][0-9][0-9]*"+globEscape(s.ext)))
	if err != nil {
		return s.errorf("%v", err)
	}
	for _, m := range matches {
		num := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), s.stem+"-"), s.ext)
		n, err := strconv.Atoi(num)
		if err != nil || n <= seq {
			continue
		}
		if err := os.Remove(m); err != nil {
			return s.errorf("removing uncommitted %s: %v", m, err)
		}
	}
	return nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Write implements stdlib.Sink.
func (s *fileSink) Write(ctx context.Context, batch []stdlib.Record) error {
	if s.rotEvery > 0 && s.size+int64(len(s.buf)) > 0 && time.Since(s.opened) >= s.rotEvery {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	var errs stdlib.RecordErrors
	fc, _ := s.codec.(codec.FieldsCodec)
	rows := fc != nil && fc.Fields() && !s.header
	for i := range batch {
		var line []byte
		var err error
		var m map[string]any
		if r, ok := batch[i].Value.(*stdlib.Row); ok && rows {
			// The JSON codec encodes a row as it is, as the map it stands for.
			line, err = fc.AppendFields(s.scratch[:0], r.Shape().Names(), r.Vals())
		} else {
			v := stdlib.Materialize(batch[i].Value)
			var ok bool
			if m, ok = v.(map[string]any); !ok {
				if v != nil {
					errs = append(errs, stdlib.RecordError{Index: i, Err: fmt.Errorf("value is %T, not a record", v)})
					continue
				}
				m = map[string]any{}
			}
			line, err = s.codec.Append(s.scratch[:0], m)
		}
		if err != nil {
			errs = append(errs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		switch {
		case s.delimited:
			s.frame = binary.AppendUvarint(s.frame[:0], uint64(len(line)))
			s.frame = append(s.frame, line...)
			line = append(line[:0], s.frame...)
		case s.ocf == nil:
			line = append(line, '\n')
		}
		s.scratch = line
		if s.rotSize > 0 && s.size+int64(len(s.buf)+len(line)) > s.rotSize && s.size+int64(len(s.buf)) > 0 {
			if err := s.rotate(); err != nil {
				return err
			}
		}
		if s.header {
			s.header = false
			if s.buf, err = s.codec.(codec.HeaderCodec).AppendHeader(s.buf, m); err != nil {
				return s.errorf("header: %v", err)
			}
			s.buf = append(s.buf, '\n')
		}
		s.buf = append(s.buf, line...)
		s.bufN++
		if len(s.buf) >= flushSize {
			if err := s.flush(); err != nil {
				return err
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// SentBytes implements stdlib.ByteCounter.
func (s *fileSink) SentBytes() int64 { return s.sent.Load() }

// flush writes the buffer to the current file (not synced).
func (s *fileSink) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	out := s.buf
	if s.ocf != nil {
		// One OCF block per flush: every committed length (a checkpoint
		// flushes first) ends at a block boundary, so truncating to it
		// leaves a valid file.
		var err error
		if s.size == 0 {
			if out, err = s.ocf.Header(nil); err != nil {
				return s.errorf("avro header: %v", err)
			}
		} else {
			out = nil
		}
		out = s.ocf.Block(out, s.bufN, s.buf)
	}
	n, err := s.f.Write(out)
	s.size += int64(n)
	s.sent.Add(int64(n))
	s.buf, s.bufN = s.buf[:0], 0
	if err != nil {
		return s.errorf("writing %s: %v", s.f.Name(), err)
	}
	return nil
}

// rotate completes the current file (written and synced, so that a later
// commit naming a newer file implies this one) and starts the next.
func (s *fileSink) rotate() error {
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return s.errorf("syncing %s: %v", s.f.Name(), err)
	}
	if err := s.f.Close(); err != nil {
		return s.errorf("closing %s: %v", s.f.Name(), err)
	}
	s.seq++
	f, err := os.OpenFile(s.name(s.seq), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return s.errorf("%v", err)
	}
	s.f, s.size, s.opened, s.header = f, 0, time.Now(), s.csvHead
	return nil
}

// Checkpoint implements stdlib.Sink: it syncs the data, then commits the
// state file naming the committed length and the positions.
func (s *fileSink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	finish, err := s.StartCheckpoint(ctx, cp)
	if err != nil || finish == nil {
		return err
	}
	return finish(ctx)
}

// StartCheckpoint implements stdlib.CheckpointStarter: it writes out the
// buffer and notes the committed length and the positions; finish syncs
// the data up to that length (and what Write added since, which the state
// file does not claim) and commits the state file. A rotating sink, which
// closes the file it would sync, does it all at once.
func (s *fileSink) StartCheckpoint(_ context.Context, cp stdlib.Checkpoint) (func(context.Context) error, error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	for _, p := range cp.Positions {
		// A position of another incarnation of the partition replaces
		// the one held.
		k := [2]string{p.Source, p.Partition}
		if old, ok := s.held[k]; !ok || p.Offset > old.Offset || p.Identity != old.Identity {
			s.held[k] = p
		}
	}
	s.lastCP = cp.ID
	f, path := s.f, s.statePath()
	st := sinkState{
		Seq: s.seq, File: filepath.Base(s.name(s.seq)), Size: s.size,
		Opened: s.opened, Checkpoint: cp.ID, Positions: s.heldPositions(),
	}
	finish := func(context.Context) error {
		if err := f.Sync(); err != nil {
			return s.errorf("syncing %s: %v", f.Name(), err)
		}
		fp, err := fileFingerprint(f, st.Size)
		if err != nil {
			return s.errorf("reading %s: %v", f.Name(), err)
		}
		st.Fingerprint = fp
		if err := writeSinkState(path, &st); err != nil {
			return s.errorf("committing checkpoint %d: %v", cp.ID, err)
		}
		return nil
	}
	if s.rotating {
		return nil, finish(context.Background())
	}
	return finish, nil
}

// statePaths returns the state files of every task of the stage.
func (s *fileSink) statePaths() []string {
	var out []string
	for task := range max(1, s.cfg.Tasks) {
		stem, ext := sinkStem(s.cfg.String("path"), s.cfg.Tasks, task)
		out = append(out, sinkStatePath(s.dir, stem, ext))
	}
	return out
}

// StoredPositions implements stdlib.PositionStore: the positions in the
// state files of every task.
func (s *fileSink) StoredPositions(context.Context) ([]stdlib.Position, error) {
	var out []stdlib.Position
	for _, path := range s.statePaths() {
		st, err := readSinkState(path)
		if err != nil {
			return nil, s.errorf("%v", err)
		}
		if st != nil {
			out = append(out, st.Positions...)
		}
	}
	return out, nil
}

// SetPositions implements stdlib.PositionStore: it rewrites the positions
// of the state file of every task that has one (a task without one holds
// nothing), leaving the output files alone.
func (s *fileSink) SetPositions(_ context.Context, source string, reset []string, set []stdlib.Position) error {
	for _, path := range s.statePaths() {
		st, err := readSinkState(path)
		if err != nil {
			return s.errorf("%v", err)
		}
		if st == nil {
			continue
		}
		st.Positions = stdlib.ReplacePositions(st.Positions, source, reset, set)
		if err := writeSinkState(path, st); err != nil {
			return s.errorf("writing %s: %v", path, err)
		}
	}
	return nil
}

// Close implements stdlib.Sink. Data written since the last checkpoint is
// left uncommitted: the next Open truncates it and it is replayed.
func (s *fileSink) Close(context.Context) error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return s.errorf("%v", err)
	}
	return nil
}
