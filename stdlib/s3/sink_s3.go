package s3

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/parquet-go/parquet-go"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SinkSpec) }

// minPartSize is the smallest part S3 takes in a multipart upload (all
// parts but the last).
const minPartSize = 5 << 20

// SinkSpec is the s3 sink.
var SinkSpec = &stdlib.Spec{
	Kind: stdlib.SinkKind, Name: "s3",
	Summary: "records into objects of an S3-compatible bucket (JSON lines, CSV or Parquet), partitioned by prefix := expr; rotation by records, size or time; exactly once",
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "prefix", Type: stdlib.String, Default: "", Expr: true, Doc: `the start of the key of each object: prefix := expr per record partitions by field or time ("orders/region=" + region + "/", "dt=" + format_time(meta.timestamp, "2006-01-02/15") + "/"). Keys are <prefix><source>.<partition>.<first offset>-<last offset>.<ext>, from the source positions the object holds`},
		stdlib.Param{Name: "format", Type: stdlib.Enum("json", "csv", "parquet"), Default: stdlib.Ident("json"), Doc: "json: JSON lines (.jsonl); csv: CSV rows, a header row first when header = true (.csv); parquet: a Parquet file whose columns follow the record type (.parquet)"},
		stdlib.Param{Name: "rotate_records", Type: stdlib.Int, Default: int64(0), Doc: "complete an object once it holds this many records; 0: no limit"},
		stdlib.Param{Name: "rotate_size", Type: stdlib.Size, Default: int64(64 << 20), Doc: "complete an object once it has grown to this size (Parquet: of its row groups written); 0: no limit. Objects are held in memory until uploaded"},
		stdlib.Param{Name: "rotate_interval", Type: stdlib.Duration, Default: time.Duration(0), Doc: "complete an object once it has been open this long; 0: no limit. Every object is also completed at each checkpoint"},
		stdlib.Param{Name: "part_size", Type: stdlib.Size, Default: int64(16 << 20), Doc: "an object larger than this is uploaded in parts of this size (multipart upload; at least 5MiB)"},
		stdlib.Param{Name: "upload_size", Type: stdlib.Size, Default: int64(64 << 20), Doc: "completed objects are uploaded once they add up to this size, ahead of the checkpoint (which uploads the rest); 0 uploads each as soon as it is completed. Bounds the memory completed objects hold"},
		stdlib.Param{Name: "uploads", Type: stdlib.Int, Default: int64(4), Doc: "objects uploaded at once"},
		stdlib.Param{Name: "compression", Type: stdlib.Enum("snappy", "zstd", "gzip", "none"), Default: stdlib.Ident("snappy"), Doc: "parquet: the compression of its pages"},
		stdlib.Param{Name: "state_prefix", Type: stdlib.String, Default: "_pipe/", Doc: "where in the bucket the sink keeps its commit record, <state_prefix><pipeline>.<stage>.<task>.json: the source positions its objects cover and the objects being written"},
		stdlib.Param{Name: "header", Type: stdlib.Bool, Default: true, Doc: "csv: each object starts with a header row"},
		stdlib.Param{Name: "columns", Type: stdlib.ListOf(stdlib.String), Doc: "csv: the columns in order (default: the record type's fields, else the first record's sorted keys)"},
		stdlib.Param{Name: "delimiter", Type: stdlib.String, Default: ",", Doc: "csv: the field delimiter, one byte"},
	),
	Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Schema:   true,
	Releases: true,
	Check:    checkSink,
	CheckInput: func(attrs map[string]any, records *types.Type) []stdlib.AttrError {
		if f, _ := attrs["format"].(stdlib.Ident); f == "parquet" && (records == nil || records.Kind != types.Record || len(records.Fields) == 0) {
			return []stdlib.AttrError{{Attr: "format", Message: "parquet needs the type of the records for its columns: declare schema = Name on the sink or its source"}}
		}
		return nil
	},
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) { return newSink(cfg) },
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := checkConn(attrs)
	for _, name := range []string{"rotate_records", "rotate_size"} {
		if n, ok := attrs[name].(int64); ok && n < 0 {
			errs = append(errs, stdlib.AttrError{Attr: name, Message: name + " must not be negative"})
		}
	}
	if d, ok := attrs["rotate_interval"].(time.Duration); ok && d < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "rotate_interval", Message: "rotate_interval must not be negative"})
	}
	if n, ok := attrs["part_size"].(int64); ok && (n < minPartSize || n > 5<<30) {
		errs = append(errs, stdlib.AttrError{Attr: "part_size", Message: "part_size must be between 5MiB and 5GiB (what S3 takes)"})
	}
	if n, ok := attrs["upload_size"].(int64); ok && n < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "upload_size", Message: "upload_size must not be negative"})
	}
	if n, ok := attrs["uploads"].(int64); ok && (n < 1 || n > 64) {
		errs = append(errs, stdlib.AttrError{Attr: "uploads", Message: "uploads must be between 1 and 64"})
	}
	if d, ok := attrs["delimiter"].(string); ok && len(d) != 1 {
		errs = append(errs, stdlib.AttrError{Attr: "delimiter", Message: "delimiter must be one byte"})
	}
	if p, ok := attrs["prefix"].(string); ok && strings.HasPrefix(p, "/") {
		errs = append(errs, stdlib.AttrError{Attr: "prefix", Message: "prefix must not start with /: keys are relative to the bucket"})
	}
	if p, ok := attrs["state_prefix"].(string); ok && (p == "" || strings.HasPrefix(p, "/")) {
		errs = append(errs, stdlib.AttrError{Attr: "state_prefix", Message: "state_prefix must be a key prefix such as _pipe/"})
	}
	f, _ := attrs["format"].(stdlib.Ident)
	if _, ok := attrs["columns"]; ok && f != "csv" {
		errs = append(errs, stdlib.AttrError{Attr: "columns", Message: "columns applies to format = csv only"})
	}
	if _, ok := attrs["compression"]; ok && f != "parquet" && attrs["compression"] != stdlib.Ident("snappy") {
		errs = append(errs, stdlib.AttrError{Attr: "compression", Message: "compression applies to format = parquet only"})
	}
	return errs
}

// sink is one task of an s3 sink stage.
//
// Exactly once: records are encoded into one open object per prefix and
// source partition, held in memory. An object is completed by rotation or
// at the latest by the checkpoint, and named after the source positions it
// holds: <prefix><source>.<partition>.<first>-<last>.<ext>. Before
// objects are uploaded, their keys are added to the commit record's
// pending list (one small PUT); at a checkpoint, once every object is
// uploaded, the commit record is replaced by one holding the checkpoint's
// positions and no pending keys: that PUT is the commit. On Open, the
// objects still pending — uploaded, partly uploaded (an unfinished
// multipart upload) or not at all — belong to no checkpoint: they are
// deleted and their multipart uploads aborted, and the records they held
// are replayed after the committed positions, into objects of the same
// names when the boundaries fall the same way.
type sink struct {
	cfg     stdlib.Config
	c       *conn
	exactly bool
	typ     *types.Type
	format  string
	ext     string
	pq      *parquet.Schema
	pqOpts  []parquet.WriterOption
	static  string // static prefix
	at      int    // Record.Attrs index of prefix; -1 when static
	rotN    int64
	rotSize int64
	rotAge  time.Duration
	part    uint64
	uploads int
	upSize  int64
	key     string // commit record key
	sent    atomic.Int64

	open    map[objKey]*object
	done    []*object // completed, not uploaded
	doneLen int64
	state   commitState
}

type objKey struct{ prefix, source, partition string }

// object is an object being written.
type object struct {
	k           objKey
	enc         encoder
	first, last int64
	n           int64
	opened      time.Time
	name        string // its key, once completed
	data        []byte
}

// commitState is the commit record.
type commitState struct {
	Version    int               `json:"version"`
	Checkpoint uint64            `json:"checkpoint"`
	Positions  []stdlib.Position `json:"positions"`
	// Pending lists the keys of objects uploaded (or being uploaded)
	// since the checkpoint: none of them is committed.
	Pending []string `json:"pending,omitempty"`
}

// rowGroupRows is how many records a Parquet row group holds at most.
const rowGroupRows = 65536

func newSink(cfg stdlib.Config) (*sink, error) {
	c, err := newConn(cfg, "s3 sink")
	if err != nil {
		return nil, fmt.Errorf("s3 %q: %v", cfg.Stage, err)
	}
	s := &sink{
		cfg: cfg, c: c, exactly: cfg.Delivery == stdlib.ExactlyOnce, typ: cfg.RecordType(),
		format: cfg.String("format"), static: cfg.String("prefix"), at: cfg.ExprIndex("prefix"),
		rotN: cfg.Int("rotate_records"), rotSize: cfg.Int("rotate_size"), rotAge: cfg.Duration("rotate_interval"),
		part: uint64(cfg.Int("part_size")), uploads: int(cfg.Int("uploads")), upSize: cfg.Int("upload_size"),
		key:  fmt.Sprintf("%s%s.%s.%d.json", cfg.String("state_prefix"), cfg.Pipeline, cfg.Stage, cfg.Task),
		open: map[objKey]*object{},
	}
	switch s.format {
	case "json":
		s.ext = ".jsonl"
	case "csv":
		s.ext = ".csv"
	case "parquet":
		s.ext = ".parquet"
		if s.pq, err = parquetSchema(cfg.Stage, s.typ); err != nil {
			return nil, fmt.Errorf("s3 %q: %v", cfg.Stage, err)
		}
		s.pqOpts = []parquet.WriterOption{parquet.Compression(parquetCodecs[cfg.String("compression")]),
			parquet.CreatedBy("pipe", "", ""), parquet.MaxRowsPerRowGroup(rowGroupRows)}
	}
	if s.format != "parquet" {
		if _, err := s.lineCodec(); err != nil {
			return nil, fmt.Errorf("s3 %q: %v", cfg.Stage, err)
		}
	}
	return s, nil
}

func (s *sink) lineCodec() (codec.Codec, error) {
	opts := codec.Options{Columns: s.cfg.Strings("columns")}
	if d := s.cfg.String("delimiter"); d != "" {
		opts.Comma = d[0]
	}
	return codec.New(s.format, s.typ, opts)
}

func (s *sink) errorf(format string, args ...any) error {
	return fmt.Errorf("s3 %q: %s", s.cfg.Stage, fmt.Sprintf(format, args...))
}

// Open implements stdlib.Sink: it reads the commit record, removes what an
// interrupted run left pending and returns the committed positions.
func (s *sink) Open(ctx context.Context) ([]stdlib.Position, error) {
	if err := s.c.checkBucket(ctx); err != nil {
		return nil, s.errorf("%v", err)
	}
	st, err := s.readState(ctx, s.key)
	if err != nil {
		return nil, err
	}
	s.state = *st
	if len(s.state.Pending) > 0 {
		if err := s.removePending(ctx, s.state.Pending); err != nil {
			return nil, err
		}
		s.state.Pending = nil
		if err := s.writeState(ctx); err != nil {
			return nil, err
		}
	}
	if !s.exactly {
		return nil, nil
	}
	return slices.Clone(s.state.Positions), nil
}

// readState reads the commit record; an empty one when there is none.
func (s *sink) readState(ctx context.Context, key string) (*commitState, error) {
	var b []byte
	err := s.c.do(ctx, func() error {
		o, err := s.c.cli.GetObject(ctx, s.c.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer o.Close()
		var buf bytes.Buffer
		_, err = buf.ReadFrom(o)
		b = buf.Bytes()
		return err
	})
	if notFound(err) {
		return &commitState{Version: 1}, nil
	}
	if err != nil {
		return nil, s.errorf("reading the commit record %s: %v", key, err)
	}
	var st commitState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, s.errorf("the commit record %s is corrupt: %v", key, err)
	}
	if st.Version != 1 {
		return nil, s.errorf("the commit record %s has version %d, want 1", key, st.Version)
	}
	return &st, nil
}

// writeState replaces the commit record by s.state (one PUT: atomic).
func (s *sink) writeState(ctx context.Context) error { return s.putState(ctx, s.key, &s.state) }

// putState replaces the commit record at key by st.
func (s *sink) putState(ctx context.Context, key string, st *commitState) error {
	st.Version = 1
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	err = s.c.do(ctx, func() error {
		_, err := s.c.cli.PutObject(ctx, s.c.bucket, key, bytes.NewReader(b), int64(len(b)),
			minio.PutObjectOptions{ContentType: "application/json"})
		return err
	})
	if err != nil {
		return s.errorf("writing the commit record %s: %v", key, err)
	}
	return nil
}

// removePending deletes objects of no checkpoint and aborts their
// unfinished multipart uploads.
func (s *sink) removePending(ctx context.Context, keys []string) error {
	for _, k := range keys {
		err := s.c.do(ctx, func() error {
			if err := s.c.cli.RemoveIncompleteUpload(ctx, s.c.bucket, k); err != nil && !notFound(err) {
				return err
			}
			err := s.c.cli.RemoveObject(ctx, s.c.bucket, k, minio.RemoveObjectOptions{})
			if notFound(err) {
				return nil
			}
			return err
		})
		if err != nil {
			return s.errorf("removing the uncommitted object %s: %v", k, err)
		}
	}
	if len(keys) > 0 && s.cfg.Logger != nil {
		s.cfg.Logger.Info("s3 sink: removed objects of an unfinished checkpoint", "objects", len(keys))
	}
	return nil
}

// SentBytes implements stdlib.ByteCounter.
func (s *sink) SentBytes() int64 { return s.sent.Load() }

// Write implements stdlib.Sink.
func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	var errs stdlib.RecordErrors
	now := time.Now()
	for i := range batch {
		r := &batch[i]
		m, ok := r.Value.(map[string]any)
		if !ok {
			if r.Value != nil {
				errs = append(errs, stdlib.RecordError{Index: i, Err: fmt.Errorf("value is %T, not a record", r.Value)})
				continue
			}
			m = map[string]any{}
		}
		prefix := s.static
		if v, ok := r.Attr(s.at); ok && v != nil {
			prefix = v.(string)
		}
		if strings.HasPrefix(prefix, "/") {
			errs = append(errs, stdlib.RecordError{Index: i, Err: fmt.Errorf("prefix %q starts with /", prefix)})
			continue
		}
		k := objKey{prefix, r.Pos.Source, r.Pos.Partition}
		o := s.open[k]
		if o != nil && s.full(o, now) {
			s.complete(o)
			o = nil
		}
		if o == nil {
			var err error
			if o, err = s.newObject(k, now); err != nil {
				return err
			}
		}
		if err := o.enc.add(m); err != nil {
			errs = append(errs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		if o.n == 0 {
			o.first = r.Pos.Offset
			s.open[k] = o
		}
		o.last = r.Pos.Offset
		o.n++
	}
	if len(s.done) > 0 && s.doneLen >= s.upSize {
		if err := s.upload(ctx); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// full reports whether o is due for rotation before another record.
func (s *sink) full(o *object, now time.Time) bool {
	return s.rotN > 0 && o.n >= s.rotN || s.rotSize > 0 && o.enc.size() >= s.rotSize ||
		s.rotAge > 0 && now.Sub(o.opened) >= s.rotAge
}

func (s *sink) newObject(k objKey, now time.Time) (*object, error) {
	o := &object{k: k, opened: now}
	if s.format == "parquet" {
		o.enc = newParquetEncoder(s.pq, s.typ, s.pqOpts)
		return o, nil
	}
	c, err := s.lineCodec()
	if err != nil {
		return nil, s.errorf("%v", err)
	}
	_, isCSV := c.(codec.HeaderCodec)
	o.enc = &lineEncoder{codec: c, header: isCSV && s.cfg.Bool("header")}
	return o, nil
}

// complete moves o from the open objects to those awaiting upload.
func (s *sink) complete(o *object) {
	delete(s.open, o.k)
	o.name = objectName(o.k, o.first, o.last, s.ext)
	s.done = append(s.done, o)
	s.doneLen += o.enc.size()
}

// objectName is the key of the object of k holding the source offsets
// first to last.
func objectName(k objKey, first, last int64, ext string) string {
	return fmt.Sprintf("%s%s.%s.%010d-%010d%s", k.prefix, escapeName(k.source), escapeName(k.partition), first, last, ext)
}

// escapeName escapes what a key part cannot hold as it is (/ and
// characters S3 treats specially), so that it stays one path segment.
func escapeName(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ".", "%2E")
}

// upload finishes the completed objects and uploads them, after adding
// their keys to the commit record's pending list.
func (s *sink) upload(ctx context.Context) error {
	if len(s.done) == 0 {
		return nil
	}
	for _, o := range s.done {
		b, err := o.enc.finish()
		if err != nil {
			return s.errorf("completing %s: %v", o.name, err)
		}
		o.data = b
		s.state.Pending = append(s.state.Pending, o.name)
	}
	if err := s.writeState(ctx); err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	work := make(chan *object)
	for range min(s.uploads, len(s.done)) {
		wg.Go(func() {
			b := s.c.newBackoff()
			for o := range work {
				if err := s.put(ctx, b, o); err != nil {
					mu.Lock()
					ferr = cmp.Or(ferr, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, o := range s.done {
		work <- o
	}
	close(work)
	wg.Wait()
	if ferr != nil {
		return ferr
	}
	clear(s.done)
	s.done, s.doneLen = s.done[:0], 0
	return nil
}

// put uploads one object: in one request, or in parts of part_size when
// it is larger.
func (s *sink) put(ctx context.Context, b *retry.Backoff, o *object) error {
	ct := map[string]string{".jsonl": "application/x-ndjson", ".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}[s.ext]
	err := retry.Do(ctx, b, retriable, func() error {
		_, err := s.c.cli.PutObject(ctx, s.c.bucket, o.name, bytes.NewReader(o.data), int64(len(o.data)),
			minio.PutObjectOptions{ContentType: ct, PartSize: s.part, DisableContentSha256: true})
		return err
	})
	if err != nil {
		return s.errorf("uploading %s: %v", o.name, err)
	}
	s.sent.Add(int64(len(o.data)))
	o.data = nil
	return nil
}

// Checkpoint implements stdlib.Sink: every open object is completed and
// uploaded, then the commit record takes the positions.
func (s *sink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	for _, o := range s.open {
		s.complete(o)
	}
	// Upload in a fixed order, so that a replay names the same objects
	// in the same pending order.
	slices.SortFunc(s.done, func(a, b *object) int { return strings.Compare(a.name, b.name) })
	uploaded := len(s.done) > 0
	if err := s.upload(ctx); err != nil {
		return err
	}
	changed := uploaded || len(s.state.Pending) > 0
	for _, p := range cp.Positions {
		i := slices.IndexFunc(s.state.Positions, func(q stdlib.Position) bool {
			return q.Source == p.Source && q.Partition == p.Partition
		})
		switch {
		case i < 0:
			s.state.Positions = append(s.state.Positions, p)
			changed = true
		case p.Offset > s.state.Positions[i].Offset || p.Identity != s.state.Positions[i].Identity:
			s.state.Positions[i] = p
			changed = true
		}
	}
	slices.SortFunc(s.state.Positions, func(a, b stdlib.Position) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Partition, b.Partition))
	})
	if !changed {
		return nil // nothing new: an idle pipeline writes nothing
	}
	s.state.Checkpoint, s.state.Pending = cp.ID, nil
	return s.writeState(ctx)
}

// Close implements stdlib.Sink: objects not committed are dropped; the
// records are replayed after a restart.
func (s *sink) Close(context.Context) error {
	clear(s.open)
	s.done = nil
	return nil
}

// stateKeys returns the commit record keys of every task of the stage.
func (s *sink) stateKeys() []string {
	var out []string
	for task := range max(1, s.cfg.Tasks) {
		out = append(out, fmt.Sprintf("%s%s.%s.%d.json", s.cfg.String("state_prefix"), s.cfg.Pipeline, s.cfg.Stage, task))
	}
	return out
}

// StoredPositions implements stdlib.PositionStore: the positions of the
// commit records of every task.
func (s *sink) StoredPositions(ctx context.Context) ([]stdlib.Position, error) {
	var out []stdlib.Position
	for _, k := range s.stateKeys() {
		st, err := s.readState(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, st.Positions...)
	}
	return out, nil
}

// SetPositions implements stdlib.PositionStore: it rewrites the positions
// of the commit record of every task that has one, leaving the objects
// and the pending list alone.
func (s *sink) SetPositions(ctx context.Context, source string, reset []string, set []stdlib.Position) error {
	for _, k := range s.stateKeys() {
		st, err := s.readState(ctx, k)
		if err != nil {
			return err
		}
		st.Positions = stdlib.ReplacePositions(st.Positions, source, reset, set)
		if err := s.putState(ctx, k, st); err != nil {
			return err
		}
	}
	return nil
}
