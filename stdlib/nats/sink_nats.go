package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() {
	stdlib.MustRegister(SinkSpec)
	stdlib.MustRegister(CoreSinkSpec)
}

// msgParams are the message attributes of both sinks.
var msgParams = []stdlib.Param{
	{Name: "subject", Type: stdlib.String, Expr: true,
		Doc: "subject to publish on; subject := expr per record; default: the subject the record was read from"},
	{Name: "headers", Type: stdlib.MapOf(stdlib.String), Expr: true, Doc: "message headers, headers := expr (added to the record's own)"},
	formatParam,
}

// SinkSpec describes the nats sink: JetStream publishes, deduplicated by
// message id.
var SinkSpec = &stdlib.Spec{
	Kind: stdlib.SinkKind,
	Name: "nats",
	Summary: "publish records to JetStream, each with a Nats-Msg-Id made of its source position: exactly once while " +
		"replays after a crash fall within the stream's duplicate window",
	Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Schema:   true,
	Releases: true,
	Params: append(slices.Concat(connParams, msgParams),
		stdlib.Param{Name: "stream", Type: stdlib.String, Doc: "stream the subjects belong to: checked at start, or created with create_stream"},
		stdlib.Param{Name: "create_stream", Type: stdlib.Bool, Default: false, Doc: "create the stream at start unless it exists"},
		stdlib.Param{Name: "subjects", Type: stdlib.ListOf(stdlib.String), Doc: "subjects of a created stream (default: subject)"},
		stdlib.Param{Name: "duplicate_window", Type: stdlib.Duration, Default: 2 * time.Minute,
			Doc: "duplicate window of a created stream: a replay after a crash is dropped only within it"},
		stdlib.Param{Name: "offsets_bucket", Type: stdlib.String, Default: "pipe_offsets",
			Doc: "key-value bucket (created when missing) where the sink keeps the source positions its checkpoints cover"},
		stdlib.Param{Name: "max_pending", Type: stdlib.Int, Default: int64(4096), Doc: "publishes awaiting their acknowledgement at a time"},
		stdlib.Param{Name: "timeout", Type: stdlib.Duration, Default: 10 * time.Second, Doc: "longest a publish waits for its acknowledgement before it is sent again"},
	),
	Check:   checkSink,
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) { return newSink(cfg) },
}

func checkMsg(attrs map[string]any) []stdlib.AttrError {
	errs := checkConn(attrs)
	if v, ok := attrs["subject"].(string); ok && !validSubject(v, false) {
		errs = append(errs, stdlib.AttrError{Attr: "subject", Message: fmt.Sprintf("subject %q is not a subject to publish on (no wildcards, no empty tokens)", v)})
	}
	return errs
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := checkMsg(attrs)
	_, stream := attrs["stream"]
	if v, ok := attrs["stream"].(string); ok && !validName(v) {
		errs = append(errs, stdlib.AttrError{Attr: "stream", Message: "stream must be a non-empty name without '.', '*', '>' or blanks"})
	}
	create, _ := attrs["create_stream"].(bool)
	if create && !stream {
		errs = append(errs, stdlib.AttrError{Attr: "create_stream", Message: "create_stream needs stream"})
	}
	if l, ok := attrs["subjects"].([]any); ok {
		if !create {
			errs = append(errs, stdlib.AttrError{Attr: "subjects", Message: "subjects is for create_stream"})
		}
		for _, v := range l {
			if s, ok := v.(string); ok && !validSubject(s, true) {
				errs = append(errs, stdlib.AttrError{Attr: "subjects", Message: fmt.Sprintf("%q is not a valid subject", s)})
			}
		}
	} else if _, static := attrs["subject"].(string); create && !static {
		errs = append(errs, stdlib.AttrError{Attr: "subjects", Message: "create_stream without a fixed subject needs subjects"})
	}
	if v, ok := attrs["duplicate_window"].(time.Duration); ok && v <= 0 {
		errs = append(errs, stdlib.AttrError{Attr: "duplicate_window", Message: "duplicate_window must be positive: without it nothing is deduplicated"})
	}
	if v, ok := attrs["offsets_bucket"].(string); ok && !validName(v) {
		errs = append(errs, stdlib.AttrError{Attr: "offsets_bucket", Message: "offsets_bucket must be a name without '.', '*', '>' or blanks"})
	}
	return append(errs, stdlib.Positive(attrs, "max_pending", "timeout")...)
}

// encoder turns records into messages: the parts both sinks share.
type encoder struct {
	stage     string
	subject   string
	headers   map[string]any
	val       codec.Codec
	subjectAt int // index of subject := in Record.Attrs, or -1
	headersAt int
}

func newEncoder(cfg stdlib.Config) (encoder, error) {
	e := encoder{stage: cfg.Stage, subject: cfg.String("subject"), subjectAt: cfg.ExprIndex("subject"), headersAt: cfg.ExprIndex("headers")}
	e.headers, _ = cfg.Attrs["headers"].(map[string]any)
	var err error
	e.val, err = codec.New(cfg.String("format"), nil, codec.Options{})
	return e, err
}

// message converts a record: a fixed subject wins, then subject := expr,
// then the subject the record was read from.
func (e *encoder) message(r *stdlib.Record) (*nats.Msg, error) {
	m := &nats.Msg{Subject: e.subject}
	if v, ok := r.Attr(e.subjectAt); ok && m.Subject == "" {
		m.Subject, _ = v.(string)
	}
	if m.Subject == "" {
		m.Subject = r.Subject
	}
	if m.Subject == "" {
		return nil, errors.New("record has no subject and the sink sets none")
	}
	if !validSubject(m.Subject, false) {
		return nil, fmt.Errorf("subject %q is not a subject to publish on", m.Subject)
	}
	var err error
	switch v := r.Value.(type) {
	case map[string]any:
		m.Data, err = e.val.Append(nil, v)
	case nil:
		m.Data, err = e.val.Append(nil, map[string]any{})
	default:
		m.Data, err = json.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("encode value: %w", err)
	}
	set := e.headers
	if v, ok := r.Attr(e.headersAt); ok {
		set, _ = v.(map[string]any)
	}
	if len(r.Headers) > 0 || len(set) > 0 {
		m.Header = nats.Header{}
		for _, h := range r.Headers {
			m.Header.Add(h.Key, string(h.Value))
		}
		for _, k := range slices.Sorted(maps.Keys(set)) {
			switch v := set[k].(type) {
			case string:
				m.Header.Set(k, v)
			case nil:
				m.Header.Del(k)
			default:
				b, _ := json.Marshal(v)
				m.Header.Set(k, string(b))
			}
		}
	}
	return m, nil
}

type sink struct {
	stage
	enc      encoder
	create   bool
	subjects []string
	window   time.Duration
	chunk    int
	timeout  time.Duration
	bucket   string

	nc *nats.Conn
	js jetstream.JetStream
	kv jetstream.KeyValue
	bo *retry.Backoff
	// target is the identity of the stream the sink publishes to: its
	// name and creation time ("" without a stream attribute).
	target string

	// last and dup number the records of one source position (a
	// flattened record's parts), so that each gets its own message id.
	last stdlib.Position
	dup  int
}

func newSink(cfg stdlib.Config) (*sink, error) {
	st, err := newStage(cfg, checkSink)
	if err != nil {
		return nil, err
	}
	s := &sink{
		stage:    st,
		create:   cfg.Bool("create_stream"),
		subjects: cfg.Strings("subjects"),
		window:   cfg.Duration("duplicate_window"),
		chunk:    int(cfg.Int("max_pending")),
		timeout:  cfg.Duration("timeout"),
		bucket:   cfg.String("offsets_bucket"),
	}
	if s.enc, err = newEncoder(cfg); err != nil {
		return nil, err
	}
	if len(s.subjects) == 0 && s.enc.subject != "" {
		s.subjects = []string{s.enc.subject}
	}
	return s, nil
}

func (s *sink) what() string { return fmt.Sprintf("nats sink %q", s.cfg.Stage) }

// Open connects, creates or checks the stream, and returns the positions
// the sink's last checkpoint covers, kept in the offsets bucket: the
// executor drops records at or below them. Records published after that
// checkpoint come again after a crash, and JetStream drops those it stored
// already by their message ids (within the duplicate window).
func (s *sink) Open(ctx context.Context) ([]stdlib.Position, error) {
	var err error
	if s.nc, err = s.conn.connect(ctx, s.log, s.what()); err != nil {
		return nil, err
	}
	s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(s.chunk), jetstream.WithPublishAsyncTimeout(s.timeout))
	if err != nil {
		return nil, err
	}
	s.bo = s.conn.backoff(s.log, s.what())
	if s.stream != "" {
		if err := s.openStream(ctx); err != nil {
			return nil, err
		}
	}
	if s.cfg.Delivery != stdlib.ExactlyOnce {
		return nil, nil
	}
	var held []stdlib.Position
	err = retry.Do(ctx, s.conn.backoff(s.log, s.what()), transient, func() error {
		kv, err := s.js.KeyValue(ctx, s.bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.bucket, Description: "source positions of pipe's nats sinks"})
			if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				kv, err = s.js.KeyValue(ctx, s.bucket)
			}
		}
		if err != nil {
			return fmt.Errorf("offsets bucket %q: %w", s.bucket, err)
		}
		s.kv = kv
		e, err := kv.Get(ctx, s.key())
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			held = nil
			return nil
		case err != nil:
			return fmt.Errorf("offsets bucket %q: %w", s.bucket, err)
		}
		var st storedPositions
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return fmt.Errorf("offsets bucket %q, key %s: %w", s.bucket, s.key(), err)
		}
		held = st.Positions
		if st.Target != s.target {
			// Positions of another stream (deleted and created again, or
			// another one now): this one holds nothing of them.
			s.log.Warn(s.what()+": the positions kept are of another stream: the sink holds nothing",
				"bucket", s.bucket, "key", s.key(), "kept_for", st.Target, "stream", s.target)
			held = nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return held, nil
}

// storedPositions is what the sink keeps in the offsets bucket: the
// positions its last checkpoint covers and the identity of the stream they
// were published to (empty without a stream attribute: they always apply).
type storedPositions struct {
	Target    string            `json:"target,omitempty"`
	Positions []stdlib.Position `json:"positions"`
}

// key is the sink task's key in the offsets bucket.
func (s *sink) key() string {
	clean := func(v string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '_'
		}, v)
	}
	return clean(s.cfg.Pipeline) + "." + clean(s.cfg.Stage) + "." + strconv.Itoa(s.cfg.Task)
}

func (s *sink) openStream(ctx context.Context) error {
	var info *jetstream.StreamInfo
	err := retry.Do(ctx, s.conn.backoff(s.log, s.what()), transient, func() error {
		st, err := s.js.Stream(ctx, s.stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) && s.create {
			st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{Name: s.stream, Subjects: s.subjects, Duplicates: s.window})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // an attempt whose answer was lost
				st, err = s.js.Stream(ctx, s.stream)
			}
		}
		if err != nil {
			return fmt.Errorf("stream %q: %w", s.stream, err)
		}
		info = st.CachedInfo()
		return nil
	})
	if err != nil {
		return err
	}
	s.target = streamIdentity(s.stream, info.Created)
	if s.cfg.Delivery == stdlib.ExactlyOnce {
		s.log.Info(s.what()+": replays are dropped within the stream's duplicate window",
			"stream", s.stream, "duplicate_window", info.Config.Duplicates)
	}
	return nil
}

// msgID names a record by where it came from, so that the same record
// published again after a crash has the same id: the pipeline, the sink,
// the source position and, for the second and later records of one
// position, their number.
func (s *sink) msgID(r *stdlib.Record) string {
	p := r.Pos
	if p == s.last {
		s.dup++
	} else {
		s.last, s.dup = p, 0
	}
	id := s.cfg.Pipeline + "/" + s.cfg.Stage + "/" + p.Source + "/" + p.Partition + "@" + strconv.FormatInt(p.Offset, 10)
	if s.dup > 0 {
		id += "#" + strconv.Itoa(s.dup)
	}
	return id
}

// Write publishes the batch and waits for JetStream's acknowledgements.
// Records that cannot be encoded, or that JetStream rejects (no stream for
// their subject, too large), are RecordErrors; publishes lost with the
// connection are sent again, with the same message ids, until retry_timeout.
func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	var rerrs stdlib.RecordErrors
	msgs := make([]*nats.Msg, 0, len(batch))
	from := make([]int, 0, len(batch))
	for i := range batch {
		m, err := s.enc.message(&batch[i])
		id := s.msgID(&batch[i]) // numbered even when it fails, as a replay numbers it
		if err != nil {
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(jetstream.MsgIDHeader, id)
		msgs = append(msgs, m)
		from = append(from, i)
	}
	for len(msgs) > 0 {
		n := min(len(msgs), s.chunk)
		rejected, err := s.publish(ctx, msgs[:n])
		if err != nil {
			return err
		}
		for _, r := range rejected {
			rerrs = append(rerrs, stdlib.RecordError{Index: from[r.index], Err: r.err})
		}
		msgs, from = msgs[n:], from[n:]
	}
	if len(rerrs) > 0 {
		slices.SortFunc(rerrs, func(a, b stdlib.RecordError) int { return a.Index - b.Index })
		return rerrs
	}
	return nil
}

type rejection struct {
	index int
	err   error
}

// publish sends msgs and waits for their acknowledgements, sending again
// those a lost connection left unacknowledged.
func (s *sink) publish(ctx context.Context, msgs []*nats.Msg) ([]rejection, error) {
	todo := make([]int, len(msgs))
	for i := range todo {
		todo[i] = i
	}
	var rejected []rejection
	for {
		futs := make([]jetstream.PubAckFuture, len(todo))
		var cause error
		for k, i := range todo {
			f, err := s.js.PublishMsgAsync(msgs[i])
			if err != nil {
				cause = err
				break
			}
			futs[k] = f
		}
		var again []int
		for k, i := range todo {
			f := futs[k]
			if f == nil {
				again = append(again, i)
				continue
			}
			select {
			case <-f.Ok():
			case err := <-f.Err():
				switch {
				case transient(err):
					// No responders also while JetStream starts: a stream
					// missing for the subject is the record's fault.
					if (errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)) && s.noStream(ctx, msgs[i].Subject) {
						rejected = append(rejected, rejection{i, fmt.Errorf("no stream takes subject %q", msgs[i].Subject)})
						continue
					}
					again = append(again, i)
					cause = err
				default:
					rejected = append(rejected, rejection{i, fmt.Errorf("publish on %q: %w", msgs[i].Subject, err)})
				}
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if cause != nil && !transient(cause) {
			return nil, fmt.Errorf("publish: %w", cause)
		}
		if len(again) == 0 {
			s.bo.Reset()
			return rejected, nil
		}
		if err := s.bo.Wait(ctx, cause); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		todo = again
	}
}

// noStream reports whether JetStream answers and has no stream for
// subject.
func (s *sink) noStream(ctx context.Context, subject string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.js.AccountInfo(ctx); err != nil {
		return false
	}
	_, err := s.js.StreamNameBySubject(ctx, subject)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// Checkpoint stores the positions the checkpoint covers in the offsets
// bucket (exactly_once): every message before it is stored already, Write
// having returned only once JetStream acknowledged each.
func (s *sink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if s.kv == nil || len(cp.Positions) == 0 {
		return nil
	}
	b, err := json.Marshal(storedPositions{Target: s.target, Positions: cp.Positions})
	if err != nil {
		return err
	}
	err = retry.Do(ctx, s.bo, transient, func() error {
		_, err := s.kv.Put(ctx, s.key(), b)
		return err
	})
	if err != nil {
		return fmt.Errorf("store positions in %q: %w", s.bucket, err)
	}
	return nil
}

func (s *sink) Close(context.Context) error {
	if s.nc != nil {
		s.nc.Close()
	}
	return nil
}
