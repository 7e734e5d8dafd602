package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() {
	stdlib.MustRegister(SourceSpec)
	stdlib.MustRegister(CoreSourceSpec)
}

// formatParam is the value format of the sources and sinks.
var formatParam = stdlib.Param{Name: "format", Type: stdlib.Enum("json", "string", "bytes"), Default: stdlib.Ident("json"),
	Doc: "message format: json (one object), string or bytes ({value: ...})"}

// SourceSpec describes the nats source: a JetStream durable pull consumer.
var SourceSpec = &stdlib.Spec{
	Kind: stdlib.SourceKind,
	Name: "nats",
	Summary: "read a JetStream stream through a durable pull consumer, acknowledging after each checkpoint " +
		"(at least once; exactly once into an exactly-once sink, which keeps stream sequences)",
	Schema: true,
	Meta:   []stdlib.MetaField{stdlib.MetaSubject, stdlib.MetaOffset, stdlib.MetaTimestamp, stdlib.MetaHeaders},
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "stream", Type: stdlib.String, Required: true, Doc: "JetStream stream to read"},
		stdlib.Param{Name: "consumer", Type: stdlib.String, Required: true,
			Doc: "durable consumer name: created when missing, and created again at the resume position when the pipeline resumes elsewhere than it stands; it belongs to the pipeline"},
		stdlib.Param{Name: "filter", Type: stdlib.String, Doc: "subject filter of the consumer (wildcards allowed); default: every subject of the stream"},
		stdlib.Param{Name: "start", Type: stdlib.ParamType{Kind: stdlib.TimeParam, OrEnum: []string{"earliest", "latest"}},
			Default: stdlib.Ident("earliest"),
			Doc:     "where a consumer without a resume position begins: earliest, latest (new messages only) or an RFC 3339 time"},
		formatParam,
		stdlib.Param{Name: "batch", Type: stdlib.Int, Default: int64(1000), Doc: "messages asked for by one pull request"},
		stdlib.Param{Name: "max_wait", Type: stdlib.Duration, Default: 250 * time.Millisecond, Doc: "longest a pull request waits for messages"},
		stdlib.Param{Name: "ack_wait", Type: stdlib.Duration, Default: time.Minute,
			Doc: "the consumer's acknowledgement wait: messages are acknowledged after each checkpoint, so longer than the checkpoint interval (redeliveries are dropped, but cost)"},
		stdlib.Param{Name: "max_ack_pending", Type: stdlib.Int, Default: int64(1000000),
			Doc: "messages delivered and not yet acknowledged the consumer allows: at least what one checkpoint interval reads"},
	),
	Output: stdlib.RawOutput,
	Check:  checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newSource(cfg)
	},
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	errs := checkConn(attrs)
	for _, name := range []string{"stream", "consumer"} {
		if v, ok := attrs[name].(string); ok && !validName(v) {
			errs = append(errs, stdlib.AttrError{Attr: name, Message: name + " must be a non-empty name without '.', '*', '>' or blanks"})
		}
	}
	if v, ok := attrs["filter"].(string); ok && !validSubject(v, true) {
		errs = append(errs, stdlib.AttrError{Attr: "filter", Message: fmt.Sprintf("filter %q is not a valid subject", v)})
	}
	errs = append(errs, stdlib.Positive(attrs, "batch", "max_ack_pending", "max_wait", "ack_wait")...)
	if w, ok := attrs["max_wait"].(time.Duration); ok && w > time.Minute {
		errs = append(errs, stdlib.AttrError{Attr: "max_wait", Message: "max_wait must be at most 1m: commits wait for it"})
	}
	return errs
}

// validName reports whether s can name a stream or a consumer.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c == '.' || c == '*' || c == '>' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			return false
		}
	}
	return true
}

// validSubject reports whether s is a subject: dot-separated non-empty
// tokens without blanks; with wildcards, '*' may be a token and '>' the
// last one.
func validSubject(s string, wildcards bool) bool {
	if s == "" {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			if c := s[i]; c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				return false
			}
			continue
		}
		tok := s[start:i]
		switch {
		case tok == "":
			return false
		case tok == "*" || tok == ">":
			if !wildcards || tok == ">" && i != len(s) {
				return false
			}
		}
		start = i + 1
	}
	return true
}

// ackRef is how a read batch's last message is acknowledged: with the
// consumer's AckAll policy, acknowledging it acknowledges everything
// delivered before it.
type ackRef struct {
	seq   uint64 // stream sequence
	reply string // the message's reply subject
	gen   int    // consumer incarnation it was delivered by
}

type source struct {
	stage
	consumer string
	filter   string
	start    string // earliest, latest, or "" with startTime
	startAt  time.Time
	fetchN   int
	maxWait  time.Duration
	ackWait  time.Duration
	pending  int
	val      codec.Codec

	nc    *nats.Conn
	js    jetstream.JetStream
	cons  jetstream.Consumer
	bo    *retry.Backoff
	ident string // the stream's name and creation time
	batch jetstream.MessageBatch

	gen        int    // consumer incarnation, counted from 1 at Open
	lastD      uint64 // consumer sequence of the last delivery seen (0: none in this incarnation)
	emitted    uint64 // stream sequence of the last record emitted
	committed  uint64 // stream sequence the last completed checkpoint covers
	reconnects uint64 // the connection's reconnect count when last looked at
	acks       []ackRef
	owed       *ackRef // an acknowledgement a lost connection prevented

	// behind is the number of messages matching the consumer not
	// delivered yet, as the last message read says; -1 before one.
	behind atomic.Int64
}

func newSource(cfg stdlib.Config) (*source, error) {
	st, err := newStage(cfg, checkSource)
	if err != nil {
		return nil, err
	}
	s := &source{
		stage:    st,
		consumer: cfg.String("consumer"),
		filter:   cfg.String("filter"),
		fetchN:   int(cfg.Int("batch")),
		maxWait:  cfg.Duration("max_wait"),
		ackWait:  cfg.Duration("ack_wait"),
		pending:  int(cfg.Int("max_ack_pending")),
	}
	s.behind.Store(-1)
	switch st := cfg.Attrs["start"].(type) {
	case stdlib.Ident:
		s.start = string(st)
	case string:
		s.startAt, _ = stdlib.ParseTime(st) // checked by Spec.Values
	default:
		return nil, fmt.Errorf("start has unexpected value %v", st)
	}
	s.val, err = codec.New(cfg.String("format"), cfg.Schema, codec.Options{})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *source) what() string { return fmt.Sprintf("nats source %q", s.cfg.Stage) }

// Open connects, looks the stream up and positions the consumer: after
// the resume position, else where the consumer stands (its acknowledged
// floor), else as start says.
func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	if s.cfg.Task != 0 {
		return nil // one reader per stream: other tasks stay idle
	}
	if resume == nil {
		resume = stdlib.ResumeMap(nil)
	}
	var err error
	if s.nc, err = s.conn.connect(ctx, s.log, s.what()); err != nil {
		return err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return err
	}
	s.bo = s.conn.backoff(s.log, s.what())
	var (
		info  *jetstream.ConsumerInfo
		sinfo *jetstream.StreamInfo
	)
	err = s.do(ctx, func() error {
		st, err := s.js.Stream(ctx, s.stream)
		if err != nil {
			return fmt.Errorf("stream %q: %w", s.stream, err)
		}
		sinfo = st.CachedInfo()
		c, err := st.Consumer(ctx, s.consumer)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			info = nil
		case err != nil:
			return fmt.Errorf("consumer %q: %w", s.consumer, err)
		default:
			info = c.CachedInfo()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if sinfo.Config.Retention == jetstream.InterestPolicy {
		s.log.Warn(s.what()+": the stream has interest retention: creating the consumer again at a resume position can lose messages no other consumer holds",
			"stream", s.stream)
	}
	s.ident = streamIdentity(s.stream, sinfo.Created)
	off, resumed := resume.Resume(s.stream, s.ident)
	fresh := false
	if h, ok := resume.(stdlib.Handover); ok && !resumed {
		fresh = h.Fresh(s.stream)
	}
	// The consumer's floor: what it acknowledged, or, before anything is
	// acknowledged, where it was created to start.
	var floor uint64
	if info != nil {
		floor = info.AckFloor.Stream
		if c := info.Config; floor == 0 && c.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && c.OptStartSeq > 0 {
			floor = c.OptStartSeq - 1
		}
	}
	var start uint64 // 0: as the start attribute says
	switch {
	case resumed:
		start = uint64(off) + 1
		s.emitted, s.committed = uint64(off), uint64(off)
	case info != nil && !fresh && floor > 0:
		start = floor + 1
		s.emitted, s.committed = floor, floor
	}
	// A consumer that stands where the pipeline continues is kept: every
	// delivery acknowledged, the acknowledged floor at the resume position.
	keep := info != nil && !fresh && info.NumAckPending == 0 && info.Config.AckPolicy == jetstream.AckAllPolicy &&
		info.Config.FilterSubject == s.filter && (start == 0 && floor == 0 || start == floor+1)
	if keep {
		s.gen, s.lastD = 1, info.Delivered.Consumer
		err = s.do(ctx, func() (err error) {
			s.cons, err = s.js.Consumer(ctx, s.stream, s.consumer)
			return err
		})
		if err != nil {
			return fmt.Errorf("consumer %q: %w", s.consumer, err)
		}
		s.update(ctx, info)
		return nil
	}
	if info != nil {
		s.log.Info(s.what()+": creating the consumer again where the pipeline resumes",
			"stream", s.stream, "consumer", s.consumer, "start_sequence", start,
			"acknowledged", info.AckFloor.Stream, "delivered", info.Delivered.Stream, "pending", info.NumAckPending)
	}
	if err := s.position(ctx, start, info != nil); err != nil {
		return err
	}
	return nil
}

// update brings an existing consumer's adjustable settings to the stage's.
func (s *source) update(ctx context.Context, info *jetstream.ConsumerInfo) {
	if info.Config.AckWait == s.ackWait && info.Config.MaxAckPending == s.pending {
		return
	}
	c := info.Config
	c.AckWait, c.MaxAckPending = s.ackWait, s.pending
	if _, err := s.js.UpdateConsumer(ctx, s.stream, c); err != nil {
		s.log.Warn(s.what()+": cannot update the consumer's ack_wait and max_ack_pending", "consumer", s.consumer, "error", err.Error())
	}
}

// position (re)creates the durable consumer so that it delivers from
// stream sequence start (0: as the start attribute says), deleting it
// first when it exists.
func (s *source) position(ctx context.Context, start uint64, exists bool) error {
	cc := jetstream.ConsumerConfig{
		Durable:       s.consumer,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       s.ackWait,
		MaxAckPending: s.pending,
		FilterSubject: s.filter,
		MaxDeliver:    -1,
	}
	switch {
	case start > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	case s.start == "latest":
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	case s.start == "earliest":
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	default:
		t := s.startAt
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	if s.batch != nil {
		s.drainBatch()
	}
	err := s.do(ctx, func() error {
		if exists {
			err := s.js.DeleteConsumer(ctx, s.stream, s.consumer)
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("delete consumer %q: %w", s.consumer, err)
			}
		}
		exists = true // an attempt whose answer was lost may have created it
		c, err := s.js.CreateConsumer(ctx, s.stream, cc)
		if err != nil {
			return fmt.Errorf("create consumer %q: %w", s.consumer, err)
		}
		s.cons = c
		return nil
	})
	if err != nil {
		return err
	}
	s.gen++
	s.lastD = 0
	s.reconnects = s.nc.Stats().Reconnects
	// Acknowledgements of an earlier incarnation would be taken for this
	// one's deliveries: they go. The new consumer starts after what the
	// last checkpoint covers, so nothing durable needs them.
	s.acks, s.owed = nil, nil
	return nil
}

// do runs op until it succeeds, retrying transient failures with backoff
// until retry_timeout.
func (s *source) do(ctx context.Context, op func() error) error {
	return retry.Do(ctx, s.conn.backoff(s.log, s.what()), transient, op)
}

// drainBatch drops the rest of the pull request under way.
func (s *source) drainBatch() {
	b := s.batch
	s.batch = nil
	go func() {
		for range b.Messages() {
		}
	}()
}

func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	if s.cfg.Task != 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.cons == nil {
		return nil, errors.New("not open")
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.batch == nil {
			if err := s.checkLost(ctx); err != nil {
				return nil, err
			}
			b, err := s.cons.Fetch(s.fetchN, jetstream.FetchMaxWait(s.maxWait))
			if err != nil {
				if !transient(err) {
					return nil, fmt.Errorf("pull: %w", err)
				}
				if werr := s.bo.Wait(ctx, err); werr != nil {
					return nil, fmt.Errorf("pull: %w", werr)
				}
				continue
			}
			s.batch = b
		}
		out, done, err := s.collect(ctx)
		if err != nil {
			return nil, err
		}
		if done {
			berr := s.batch.Error()
			s.batch = nil
			switch {
			case berr == nil:
				s.bo.Reset()
			case ctx.Err() != nil:
				return nil, ctx.Err()
			case transient(berr) || errors.Is(berr, nats.ErrConnectionClosed):
				// Messages of a pull broken off may have been lost in
				// transit: checkLost looks before the next pull.
				s.reconnects = ^uint64(0)
				if len(out) == 0 {
					if werr := s.bo.Wait(ctx, berr); werr != nil {
						return nil, fmt.Errorf("pull: %w", werr)
					}
				}
			default:
				return nil, fmt.Errorf("pull: %w", berr)
			}
		}
		// An empty answer returns too, so that the caller commits
		// between reads of an idle stream.
		return out, nil
	}
}

// collect takes the messages of the pull request under way: it waits up
// to max_wait for the first and takes those that follow at once. done
// reports that the request ended.
func (s *source) collect(ctx context.Context) (out []stdlib.Record, done bool, err error) {
	ch := s.batch.Messages()
	t := time.NewTimer(s.maxWait + time.Second)
	defer t.Stop()
	var last ackRef
	for {
		var (
			m  jetstream.Msg
			ok bool
		)
		if len(out) == 0 {
			select {
			case m, ok = <-ch:
			case <-t.C:
				return out, false, nil
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		} else {
			select {
			case m, ok = <-ch:
			default:
				s.noteAck(last)
				return out, false, nil
			}
		}
		if !ok {
			s.noteAck(last)
			return out, true, nil
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, false, fmt.Errorf("message metadata: %w", err)
		}
		dseq, sseq := md.Sequence.Consumer, md.Sequence.Stream
		if s.lastD > 0 && dseq > s.lastD+1 {
			// Deliveries between the last one seen and this one were
			// lost in transit: take the consumer back to what the last
			// checkpoint covers; what was emitted since is dropped again.
			s.log.Warn(s.what()+": deliveries lost in transit; repositioning the consumer",
				"stream", s.stream, "consumer", s.consumer, "expected", s.lastD+1, "got", dseq, "from", s.committed+1)
			s.noteAck(last)
			if err := s.position(ctx, s.committed+1, true); err != nil {
				return nil, false, err
			}
			return out, false, nil
		}
		s.lastD = dseq
		if sseq <= s.emitted {
			continue // delivered again (ack_wait passed): emitted already
		}
		s.emitted = sseq
		s.behind.Store(int64(md.NumPending))
		out = append(out, s.record(m, md))
		last = ackRef{seq: sseq, reply: m.Reply(), gen: s.gen}
	}
}

// noteAck keeps the acknowledgement of a read's last message.
func (s *source) noteAck(a ackRef) {
	if a.reply != "" {
		s.acks = append(s.acks, a)
	}
}

// checkLost repositions the consumer when the connection was
// re-established since the last look and the consumer delivered messages
// that never arrived (a pull broken off by a server restart).
func (s *source) checkLost(ctx context.Context) error {
	if r := s.nc.Stats().Reconnects; r == s.reconnects {
		return nil
	}
	var info *jetstream.ConsumerInfo
	err := s.do(ctx, func() (err error) {
		info, err = s.cons.Info(ctx)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("consumer %q: %w", s.consumer, err)
	}
	s.reconnects = s.nc.Stats().Reconnects
	switch {
	case info == nil:
		s.log.Warn(s.what()+": the consumer is gone; creating it again", "consumer", s.consumer, "from", s.committed+1)
	case info.Delivered.Consumer > s.lastD:
		s.log.Warn(s.what()+": deliveries lost in transit; repositioning the consumer",
			"consumer", s.consumer, "seen", s.lastD, "delivered", info.Delivered.Consumer, "from", s.committed+1)
	default:
		return nil
	}
	if err := s.position(ctx, s.committed+1, info != nil); err != nil {
		return err
	}
	return nil
}

func (s *source) record(m jetstream.Msg, md *jetstream.MsgMetadata) stdlib.Record {
	data := m.Data()
	var derr error
	v, err := s.val.Decode(data)
	if err != nil {
		derr = fmt.Errorf("decode %s@%d: %w", s.stream, md.Sequence.Stream, err)
	}
	return stdlib.Record{
		Value:     v,
		Headers:   headersOf(m.Headers()),
		Time:      md.Timestamp,
		Subject:   m.Subject(),
		Partition: -1,
		Pos:       stdlib.Position{Source: s.cfg.Stage, Partition: s.stream, Offset: int64(md.Sequence.Stream)},
		Raw:       data,
		Err:       derr,
	}
}

// headersOf converts a message's headers, the first value of each name.
func headersOf(h nats.Header) []stdlib.Header {
	if len(h) == 0 {
		return nil
	}
	out := make([]stdlib.Header, 0, len(h))
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		if vs := h[k]; len(vs) > 0 {
			out = append(out, stdlib.Header{Key: k, Value: []byte(vs[0])})
		}
	}
	return out
}

// Commit acknowledges, once a checkpoint covering them completed, the
// messages up to positions: the last message read at or below the
// position is acknowledged, which with AckAll acknowledges all before it.
func (s *source) Commit(ctx context.Context, positions []stdlib.Position) error {
	if s.nc == nil {
		return nil
	}
	for _, p := range positions {
		if p.Source != "" && p.Source != s.cfg.Stage || p.Partition != s.stream || p.Offset < 0 {
			continue
		}
		off := uint64(p.Offset)
		if off > s.committed {
			s.committed = off
		}
		i := 0
		for i < len(s.acks) && s.acks[i].seq <= off {
			i++
		}
		if i > 0 {
			a := s.acks[i-1]
			s.acks = slices.Delete(s.acks, 0, i)
			if a.gen == s.gen {
				s.owed = &a
			}
		}
	}
	if s.owed == nil {
		return nil
	}
	a := *s.owed
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.nc.RequestWithContext(actx, a.reply, []byte("+ACK"))
	switch {
	case err == nil:
		s.owed = nil
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case transient(err):
		// What the sinks made durable stays durable: acknowledge it with
		// the next checkpoint. Meanwhile the consumer may deliver it
		// again; it is dropped as read already.
		s.log.Warn(s.what()+": acknowledgement not confirmed; sending it with the next checkpoint",
			"consumer", s.consumer, "sequence", a.seq, "error", err.Error())
		return nil
	}
	return fmt.Errorf("acknowledge %s@%d: %w", s.stream, a.seq, err)
}

// Lag implements stdlib.Lagger: the messages matching the consumer that
// were not delivered yet when the last one was read.
func (s *source) Lag(context.Context) []stdlib.Lag {
	if n := s.behind.Load(); n >= 0 {
		return []stdlib.Lag{{Partition: s.stream, Behind: n, Unit: "records"}}
	}
	return nil
}

func (s *source) Close(ctx context.Context) error {
	if s.batch != nil {
		s.drainBatch()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	return nil
}
