package s3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec is the s3 source.
var SourceSpec = &stdlib.Spec{
	Kind: stdlib.SourceKind, Name: "s3",
	Summary: "records from the objects under a prefix of an S3-compatible bucket (JSON lines, CSV, Parquet); each object a partition, resumed where it was, read again when replaced",
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "prefix", Type: stdlib.String, Default: "", Doc: "read the objects whose keys start with this (all of the bucket when empty), in key order; keys ending in / are skipped"},
		stdlib.Param{Name: "format", Type: stdlib.Enum("json", "csv", "parquet"), Default: stdlib.Ident("json"), Doc: "json: one object per line; csv: one row per line (offsets: the byte offset after each line); parquet: one record per row (offsets: the row number, from 1), timestamps as timestamp, JSON columns decoded"},
		stdlib.Param{Name: "header", Type: stdlib.Bool, Default: true, Doc: "csv: the first line of each object is a header row naming the columns (read again when an object is resumed)"},
		stdlib.Param{Name: "columns", Type: stdlib.ListOf(stdlib.String), Doc: "csv: the column names in order (default: the schema's fields, else the header row)"},
		stdlib.Param{Name: "delimiter", Type: stdlib.String, Default: ",", Doc: "csv: the field delimiter, one byte"},
		stdlib.Param{Name: "watch", Type: stdlib.Bool, Default: false, Doc: "keep listing the prefix every poll for new and replaced objects; the source then never ends"},
		stdlib.Param{Name: "poll", Type: stdlib.Duration, Default: 10 * time.Second, Doc: "how often a watched prefix is listed again"},
		stdlib.Param{Name: "batch", Type: stdlib.Int, Default: int64(1024), Doc: "records per batch handed to the next stage"},
	),
	Bounded: true,
	Schema:  true,
	Meta:    []stdlib.MetaField{stdlib.MetaOffset, stdlib.MetaTimestamp, stdlib.MetaObject},
	Check: func(attrs map[string]any) []stdlib.AttrError {
		errs := checkConn(attrs)
		if n, ok := attrs["batch"].(int64); ok && (n < 1 || n > 1<<20) {
			errs = append(errs, stdlib.AttrError{Attr: "batch", Message: "batch must be between 1 and 1048576"})
		}
		errs = append(errs, stdlib.Positive(attrs, "poll")...)
		if d, ok := attrs["delimiter"].(string); ok && len(d) != 1 {
			errs = append(errs, stdlib.AttrError{Attr: "delimiter", Message: "delimiter must be one byte"})
		}
		if attrs["format"] == stdlib.Ident("csv") && attrs["header"] == false && attrs["columns"] == nil && attrs["schema"] == nil {
			errs = append(errs, stdlib.AttrError{Attr: "header", Message: "csv without a header row needs columns or a schema to name its columns"})
		}
		return errs
	},
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newSource(cfg) },
}

// source is one task of an s3 source stage: it reads the objects whose
// keys hash to its task.
type source struct {
	cfg    stdlib.Config
	c      *conn
	prefix string
	header bool
	batch  int
	watch  bool
	poll   time.Duration
	resume stdlib.Resumer

	listed bool
	queue  []minio.ObjectInfo
	seen   map[string]string // key -> ETag of the objects taken this run
	cur    *objReader
	pq     *pqReader // the Parquet object being read
	pqInfo minio.ObjectInfo
}

// objReader reads one object.
type objReader struct {
	info  minio.ObjectInfo
	body  io.ReadCloser
	r     *bufio.Reader
	codec codec.Codec
	off   int64 // byte offset of the next line
	line  int64 // number of the next line; 0 when unknown (resumed)
}

func newSource(cfg stdlib.Config) (*source, error) {
	c, err := newConn(cfg, "s3 source")
	if err != nil {
		return nil, fmt.Errorf("s3 %q: %v", cfg.Stage, err)
	}
	s := &source{cfg: cfg, c: c, prefix: cfg.String("prefix"), header: cfg.String("format") == "csv" && cfg.Bool("header"),
		batch: int(cfg.Int("batch")), watch: cfg.Bool("watch"), poll: cfg.Duration("poll"), seen: map[string]string{}}
	if cfg.String("format") != "parquet" {
		if _, err := s.newCodec(); err != nil {
			return nil, fmt.Errorf("s3 %q: %v", cfg.Stage, err)
		}
	}
	return s, nil
}

func (s *source) newCodec() (codec.Codec, error) {
	opts := codec.Options{Columns: s.cfg.Strings("columns")}
	if d := s.cfg.String("delimiter"); d != "" {
		opts.Comma = d[0]
	}
	return codec.New(s.cfg.String("format"), s.cfg.Schema, opts)
}

func (s *source) errorf(format string, args ...any) error {
	return fmt.Errorf("s3 %q: %s", s.cfg.Stage, fmt.Sprintf(format, args...))
}

// Open implements stdlib.Source.
func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	s.resume = resume
	if err := s.c.checkBucket(ctx); err != nil {
		return s.errorf("%v", err)
	}
	return nil
}

// mine reports whether the object key belongs to this task.
func (s *source) mine(key string) bool {
	if s.cfg.Tasks <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32()%uint32(s.cfg.Tasks)) == s.cfg.Task
}

// list queues the objects under the prefix not taken yet (new, or
// replaced since: another ETag), in key order.
func (s *source) list(ctx context.Context) error {
	var found []minio.ObjectInfo
	err := s.c.do(ctx, func() error {
		found = found[:0]
		for o := range s.c.cli.ListObjects(ctx, s.c.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
			if o.Err != nil {
				return o.Err
			}
			if strings.HasSuffix(o.Key, "/") || !s.mine(o.Key) || s.seen[o.Key] == o.ETag {
				continue
			}
			found = append(found, o)
		}
		return nil
	})
	if err != nil {
		return s.errorf("listing %q: %v", s.prefix, err)
	}
	slices.SortFunc(found, func(a, b minio.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	s.queue = append(s.queue, found...)
	s.listed = true
	return nil
}

// Read implements stdlib.Source.
func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.pq != nil {
			recs, err := s.readParquet()
			if err != nil || len(recs) > 0 {
				return recs, err
			}
			continue
		}
		if s.cur != nil {
			recs, err := s.readLines(ctx)
			if err != nil || len(recs) > 0 {
				return recs, err
			}
			continue
		}
		if len(s.queue) > 0 {
			o := s.queue[0]
			s.queue = s.queue[1:]
			if err := s.openObject(ctx, o); err != nil {
				return nil, err
			}
			continue
		}
		if s.listed && !s.watch {
			return nil, stdlib.ErrEndOfInput
		}
		if s.listed {
			if err := retry.Sleep(ctx, s.poll); err != nil {
				return nil, err
			}
		}
		if err := s.list(ctx); err != nil {
			return nil, err
		}
	}
}

// identity is what an object's offsets point into: its content, told by
// its ETag (and version, on a versioned bucket).
func identity(o minio.ObjectInfo) string {
	id := "etag:" + trimETag(o.ETag)
	if o.VersionID != "" {
		id += " version:" + o.VersionID
	}
	return id
}

// openObject starts reading o after the position held for it.
func (s *source) openObject(ctx context.Context, o minio.ObjectInfo) error {
	s.seen[o.Key] = o.ETag
	var off int64
	if s.resume != nil {
		if held, ok := s.resume.Resume(o.Key, identity(o)); ok {
			off = held
		}
	}
	if s.cfg.String("format") == "parquet" {
		err := s.openParquet(ctx, o, off)
		if notFound(err) || minio.ToErrorResponse(err).StatusCode == 412 {
			delete(s.seen, o.Key) // the next listing has it
			return nil
		}
		if err != nil {
			return s.errorf("reading %s: %v", o.Key, err)
		}
		return nil
	}
	if off >= o.Size {
		return nil
	}
	c, err := s.newCodec()
	if err != nil {
		return s.errorf("%v", err)
	}
	rd := &objReader{info: o, codec: c, off: off, line: 1}
	start := off
	if s.header {
		start = 0 // the header row is read again
	}
	if off > 0 && !s.header {
		rd.line = 0
	}
	err = s.c.do(ctx, func() error {
		opts := minio.GetObjectOptions{}
		if err := opts.SetMatchETag(trimETag(o.ETag)); err != nil {
			return err
		}
		if start > 0 {
			if err := opts.SetRange(start, 0); err != nil {
				return err
			}
		}
		body, err := s.c.cli.GetObject(ctx, s.c.bucket, o.Key, opts)
		if err != nil {
			return err
		}
		if _, err := body.Stat(); err != nil {
			body.Close()
			return err
		}
		rd.body = body
		return nil
	})
	if notFound(err) || minio.ToErrorResponse(err).StatusCode == 412 {
		// Deleted or replaced since the listing: the next listing has it.
		if s.cfg.Logger != nil {
			s.cfg.Logger.Info("s3 source: object gone or replaced since listed", "object", o.Key)
		}
		delete(s.seen, o.Key)
		return nil
	}
	if err != nil {
		return s.errorf("reading %s: %v", o.Key, err)
	}
	rd.r = bufio.NewReaderSize(rd.body, 256<<10)
	s.cur = rd
	if s.header {
		line, err := rd.r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return s.fail(err)
		}
		if err := c.(codec.HeaderCodec).DecodeHeader(trimEOL(line)); err != nil {
			s.closeCur()
			return s.errorf("%s: %v", stdlib.LineRef(o.Key, 1, 0), err)
		}
		if off == 0 {
			rd.off, rd.line = int64(len(line)), 2
		} else {
			if _, err := rd.r.Discard(int(off - int64(len(line)))); err != nil {
				return s.fail(err)
			}
			rd.line = 0
		}
	}
	return nil
}

func (s *source) fail(err error) error {
	key := s.cur.info.Key
	s.closeCur()
	return s.errorf("reading %s: %v", key, err)
}

func (s *source) closeCur() {
	if s.cur != nil {
		s.cur.body.Close()
		s.cur = nil
	}
}

func trimETag(etag string) string { return strings.Trim(etag, `"`) }

func trimEOL(line []byte) []byte {
	return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
}

// readLines reads up to a batch of records from the current object.
func (s *source) readLines(context.Context) ([]stdlib.Record, error) {
	rd := s.cur
	var recs []stdlib.Record
	for len(recs) < s.batch {
		line, err := rd.r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, s.fail(err)
		}
		start := rd.off
		rd.off += int64(len(line))
		ln := rd.line
		if rd.line > 0 {
			rd.line++
		}
		if text := trimEOL(line); len(bytes.TrimSpace(text)) > 0 {
			r := stdlib.Record{Pos: stdlib.Position{Source: s.cfg.Stage, Partition: rd.info.Key, Offset: rd.off},
				Time: rd.info.LastModified, Partition: -1, Line: ln, Start: start, Raw: slices.Clone(text)}
			v, derr := rd.codec.Decode(text)
			if derr != nil {
				r.Err = fmt.Errorf("%s: %w", stdlib.LineRef(rd.info.Key, ln, start), derr)
			} else {
				r.Value = v
			}
			recs = append(recs, r)
		}
		if err != nil { // io.EOF
			s.closeCur()
			break
		}
	}
	return recs, nil
}

// Commit implements stdlib.Source: positions live in the checkpoint store
// and the exactly-once sinks.
func (s *source) Commit(context.Context, []stdlib.Position) error { return nil }

// Close implements stdlib.Source.
func (s *source) Close(context.Context) error {
	s.closeCur()
	s.closeParquet()
	return nil
}
