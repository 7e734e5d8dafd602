package amqp

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec describes the rabbitmq source.
var SourceSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    Component,
	Summary: "consume a RabbitMQ queue (AMQP 0.9.1), acknowledging messages once a checkpoint covers them: at least once",
	Schema:  true,
	// A queue cannot be read again from a position: a message whose
	// acknowledgement a crash prevented is redelivered, and no sink can
	// tell it from a new one by its position.
	Delivery: []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.AtMostOnce},
	Meta: []stdlib.MetaField{stdlib.MetaOffset, stdlib.MetaTimestamp, stdlib.MetaHeaders,
		stdlib.MetaExchange, stdlib.MetaRoutingKey, stdlib.MetaRedelivered, stdlib.MetaMessageID},
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "queue", Type: stdlib.String, Required: true, Doc: "queue to consume"},
		stdlib.Param{Name: "declare_queue", Type: stdlib.Block(declareQueueParams...), Doc: "declare the queue at start (created unless it exists with these settings)"},
		stdlib.Param{Name: "bind", Type: stdlib.Block(
			stdlib.Param{Name: "exchange", Type: stdlib.String, Required: true, Doc: "exchange to bind the queue to"},
			stdlib.Param{Name: "keys", Type: stdlib.ListOf(stdlib.String), Required: true, Doc: "binding keys (topic patterns for a topic exchange)"},
			stdlib.Param{Name: "exchange_type", Type: stdlib.Enum(exchangeTypes...), Doc: "declare the exchange (durable) with this type"},
		), Doc: "bind the queue to an exchange at start"},
		stdlib.Param{Name: "prefetch", Type: stdlib.Int, Default: int64(2000),
			Doc: "most messages delivered and not yet acknowledged (QoS prefetch count); a source with that many waiting for a checkpoint asks for one"},
		stdlib.Param{Name: "format", Type: stdlib.Enum("json", "string", "bytes"), Default: stdlib.Ident("json"), Doc: "message body format"},
		stdlib.Param{Name: "batch", Type: stdlib.Int, Default: int64(500), Doc: "most records handed on at once"},
		stdlib.Param{Name: "max_wait", Type: stdlib.Duration, Default: 250 * time.Millisecond, Doc: "longest a read waits for a first message"},
	),
	Output: stdlib.RawOutput,
	Check:  checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newSource(cfg)
	},
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	errs := checkConn(attrs)
	if q, ok := attrs["queue"].(string); ok && q == "" {
		errs = append(errs, stdlib.AttrError{Attr: "queue", Message: "queue must not be empty"})
	}
	if n, ok := attrs["prefetch"].(int64); ok && (n < 1 || n > 65535) {
		errs = append(errs, stdlib.AttrError{Attr: "prefetch", Message: "prefetch must be between 1 and 65535"})
	}
	errs = append(errs, stdlib.Positive(attrs, "batch", "max_wait")...)
	if b, ok := attrs["bind"].(map[string]any); ok {
		if l, ok := b["keys"].([]any); ok && len(l) == 0 {
			errs = append(errs, stdlib.AttrError{Attr: "bind.keys", Message: "bind needs at least one key"})
		}
		if e, ok := b["exchange"].(string); ok && e == "" {
			errs = append(errs, stdlib.AttrError{Attr: "bind.exchange", Message: "the default exchange cannot be bound to"})
		}
	}
	return errs
}

// unacked is a message handed on and not acknowledged yet.
type unacked struct {
	off int64  // its record's offset
	tag uint64 // its delivery tag on the current channel
}

// source consumes one queue on one channel. Records are numbered from 1
// in the order this process received them (Position.Offset); the number
// means nothing to another process nor to the broker, so the source never
// resumes (a queue has no position to resume from: the broker keeps what
// was not acknowledged) and no sink drops its records as replays.
// Commit acknowledges, with one multiple ack, every message of the
// current channel at or below the committed offset; messages of a channel
// that closed were requeued by the broker and come again, flagged
// redelivered.
type source struct {
	cfg       stdlib.Config
	log       *slog.Logger
	conn      *conn
	queue     string
	part      string
	prefetch  int
	batch     int
	maxWait   time.Duration
	val       codec.Codec
	decl      declaration
	resume    stdlib.Resumer
	dialBo    *retry.Backoff // connecting
	closeBo   *retry.Backoff // channels that close before delivering
	cn        *amqp.Connection
	ch        *amqp.Channel
	chClose   chan *amqp.Error
	cnClose   chan *amqp.Error
	delivered <-chan amqp.Delivery
	session   string    // the identity of the partition's positions: this source's alone
	seq       int64     // offset of the last record
	pending   []unacked // handed on, on the current channel, not acknowledged
	timer     *time.Timer
	lag       stdlib.LagProbe[*amqp.Connection]
}

func newSource(cfg stdlib.Config) (*source, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	s := &source{
		cfg:      cfg,
		log:      cfg.Log(),
		conn:     cn,
		queue:    cfg.String("queue"),
		prefetch: int(cfg.Int("prefetch")),
		batch:    int(cfg.Int("batch")),
		maxWait:  cfg.Duration("max_wait"),
		session:  stdlib.SessionIdentity(),
	}
	s.part = s.queue
	if cfg.Tasks > 1 {
		// Each task has a channel and numbers its own records.
		s.part += "#" + strconv.Itoa(cfg.Task)
	}
	if b, ok := cfg.Block("declare_queue"); ok {
		s.decl.queue, s.decl.queueType, s.decl.queueDur = s.queue, b.String("type"), b.Bool("durable")
	}
	if b, ok := cfg.Block("bind"); ok {
		s.decl.bindTo, s.decl.bindKeys = b.String("exchange"), b.Strings("keys")
		s.decl.queue = s.queue
		if t := b.String("exchange_type"); t != "" {
			s.decl.exchange, s.decl.exchangeType, s.decl.exchangeDur = s.decl.bindTo, t, true
		}
		if _, ok := cfg.Block("declare_queue"); !ok {
			s.decl.queue = "" // bind only: the queue exists
		}
	}
	if s.val, err = codec.New(cfg.String("format"), cfg.Schema, codec.Options{}); err != nil {
		return nil, err
	}
	s.lag = stdlib.LagProbe[*amqp.Connection]{
		Open: func(context.Context) (*amqp.Connection, error) {
			cn, ch, err := s.conn.dial()
			if err == nil {
				ch.Close()
			}
			return cn, err
		},
		Query: s.queryLag,
		Drop:  func(cn *amqp.Connection) { cn.Close() },
	}
	return s, nil
}

// Lag implements stdlib.Lagger: the messages ready in the queue, not yet
// handed to any consumer (tasks reading one queue each report the same
// figure, under their own partition).
func (s *source) Lag(ctx context.Context) []stdlib.Lag { return s.lag.Lag(ctx) }

func (s *source) queryLag(_ context.Context, cn *amqp.Connection) ([]stdlib.Lag, error) {
	ch, err := cn.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(s.queue, false, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	return []stdlib.Lag{{Partition: s.part, Behind: int64(q.Messages), Unit: "records"}}, nil
}

var _ stdlib.Lagger = (*source)(nil)

func (s *source) errorf(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// Open connects and starts consuming. It resumes nothing (see source):
// it tells resume the partition's identity, new for every source, so that
// a position stored by an earlier run (whose numbers mean nothing now) is
// neither applied nor taken for one of this run's: the positions this run
// stores and commits replace it.
func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	s.resume = resume
	if resume != nil {
		resume.Resume(s.part, s.session)
	}
	s.dialBo = s.conn.backoff(s.log, "rabbitmq source")
	s.closeBo = s.conn.backoff(s.log, "rabbitmq source: channel closed")
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	return s.connect(ctx)
}

// connect opens a connection and a channel and starts consuming.
func (s *source) connect(ctx context.Context) error {
	cn, ch, err := s.conn.dialRetry(ctx, s.dialBo, func(ch *amqp.Channel) error {
		if err := s.decl.run(ch); err != nil {
			return err
		}
		if err := ch.Qos(s.prefetch, 0, false); err != nil {
			return fmt.Errorf("set prefetch: %w", err)
		}
		d, err := ch.Consume(s.queue, fmt.Sprintf("pipe/%s/%s/%d", s.cfg.Pipeline, s.cfg.Stage, s.cfg.Task), false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("consume queue %q: %w", s.queue, err)
		}
		s.delivered = d
		return nil
	})
	if err != nil {
		return s.errorf("%w", err)
	}
	s.cn, s.ch = cn, ch
	s.chClose = ch.NotifyClose(make(chan *amqp.Error, 1))
	s.cnClose = cn.NotifyClose(make(chan *amqp.Error, 1))
	return nil
}

// drop forgets the closed channel: the broker requeued what it had not
// seen acknowledged.
func (s *source) drop() {
	if len(s.pending) > 0 {
		s.log.Info("rabbitmq channel closed: unacknowledged messages are redelivered", "stage", s.cfg.Stage, "messages", len(s.pending))
	}
	s.pending = s.pending[:0]
	if s.cn != nil {
		s.cn.Close()
	}
	s.cn, s.ch, s.delivered = nil, nil, nil
}

// closeCause is why the channel's deliveries ended.
func (s *source) closeCause() error {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case e, ok := <-s.chClose:
		if ok && e != nil {
			return e
		}
	case e, ok := <-s.cnClose:
		if ok && e != nil {
			return e
		}
	case <-t.C:
	}
	select {
	case e, ok := <-s.cnClose:
		if ok && e != nil {
			return e
		}
	default:
	}
	return amqp.ErrClosed
}

func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.ch == nil {
			if err := s.connect(ctx); err != nil {
				return nil, err
			}
		}
		if len(s.pending) >= s.prefetch {
			// The broker sends nothing more until some are acknowledged:
			// ask for a checkpoint, whose Commit acknowledges them.
			if h, ok := s.resume.(stdlib.Handover); ok {
				if err := h.Settle(ctx); err != nil {
					return nil, s.errorf("checkpoint for a full prefetch window: %w", err)
				}
			}
		}
		s.timer.Reset(s.maxWait)
		select {
		case <-ctx.Done():
			s.timer.Stop()
			return nil, ctx.Err()
		case <-s.timer.C:
			// Nothing came: return, so that checkpoints get committed.
			return nil, nil
		case d, ok := <-s.delivered:
			s.timer.Stop()
			if !ok {
				cause := s.closeCause()
				s.drop()
				if !transient(cause) {
					return nil, s.errorf("queue %q on %s: %w", s.queue, s.conn.where, cause)
				}
				if err := s.closeBo.Wait(ctx, cause); err != nil {
					return nil, s.errorf("%w", err)
				}
				continue
			}
			s.closeBo.Reset()
			return s.records(d), nil
		}
	}
}

// records returns d and the deliveries already waiting, up to batch.
func (s *source) records(d amqp.Delivery) []stdlib.Record {
	out := make([]stdlib.Record, 0, min(s.batch, 64))
	// The records' metadata, allocated in chunks.
	var metas []stdlib.MessageMeta
	meta := func() *stdlib.MessageMeta {
		if len(metas) == cap(metas) {
			metas = make([]stdlib.MessageMeta, 0, min(s.batch, max(2*cap(metas), 16)))
		}
		metas = metas[:len(metas)+1]
		return &metas[len(metas)-1]
	}
	out = append(out, s.record(d, meta()))
	for len(out) < s.batch {
		select {
		case d, ok := <-s.delivered:
			if !ok {
				return out // the next Read finds it closed
			}
			out = append(out, s.record(d, meta()))
		default:
			return out
		}
	}
	return out
}

func (s *source) record(d amqp.Delivery, m *stdlib.MessageMeta) stdlib.Record {
	s.seq++
	s.pending = append(s.pending, unacked{off: s.seq, tag: d.DeliveryTag})
	*m = stdlib.MessageMeta{Exchange: d.Exchange, RoutingKey: d.RoutingKey, Redelivered: d.Redelivered, MessageID: d.MessageId}
	r := stdlib.Record{
		Time:      d.Timestamp,
		Partition: -1,
		Pos:       stdlib.Position{Source: s.cfg.Stage, Partition: s.part, Offset: s.seq},
		Raw:       d.Body,
		Msg:       m,
	}
	if len(d.Headers) > 0 {
		r.Headers = make([]stdlib.Header, 0, len(d.Headers))
		for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
			r.Headers = append(r.Headers, stdlib.Header{Key: k, Value: headerValue(d.Headers[k])})
		}
	}
	v, err := s.val.Decode(d.Body)
	if err != nil {
		r.Err = fmt.Errorf("decode message %d of queue %q: %w", s.seq, s.queue, err)
	}
	r.Value = v
	return r
}

// headerValue renders an AMQP header value as bytes: a string or byte
// array as it is, anything else as Go prints it.
func headerValue(v any) []byte {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	case nil:
		return nil
	}
	return fmt.Append(nil, v)
}

// Commit acknowledges the messages of the current channel at or below the
// positions of a completed checkpoint.
func (s *source) Commit(ctx context.Context, positions []stdlib.Position) error {
	for _, p := range positions {
		if p.Source != s.cfg.Stage || p.Partition != s.part {
			continue
		}
		i, _ := slices.BinarySearchFunc(s.pending, p.Offset+1, func(u unacked, off int64) int { return cmp.Compare(u.off, off) })
		if i == 0 || s.ch == nil {
			continue
		}
		if err := s.ch.Ack(s.pending[i-1].tag, true); err != nil {
			// The channel closed: the broker requeued them.
			s.log.Warn("rabbitmq acknowledgement failed: the messages are redelivered", "stage", s.cfg.Stage,
				"messages", i, "err", err)
		}
		s.pending = s.pending[i:]
	}
	return nil
}

func (s *source) Close(context.Context) error {
	s.lag.Close()
	if s.cn != nil {
		// Closing the channel gives unacknowledged messages back to the
		// queue at once; a crash leaves it to the broker noticing.
		if s.ch != nil {
			s.ch.Close()
		}
		s.cn.Close()
		s.cn, s.ch = nil, nil
	}
	return nil
}
