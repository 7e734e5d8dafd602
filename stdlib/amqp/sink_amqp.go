package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the rabbitmq sink.
var SinkSpec = &stdlib.Spec{
	Kind:     stdlib.SinkKind,
	Name:     Component,
	Summary:  "publish records to a RabbitMQ exchange (AMQP 0.9.1) with publisher confirms: at least once",
	Delivery: []stdlib.Delivery{stdlib.AtLeastOnce},
	Releases: true,
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "exchange", Type: stdlib.String, Default: "", Doc: `exchange to publish to; "" is the default exchange, which routes to the queue named by the routing key`},
		stdlib.Param{Name: "routing_key", Type: stdlib.String, Default: "", Expr: true, Doc: "routing key; routing_key := expr per record"},
		stdlib.Param{Name: "message_id", Type: stdlib.String, Expr: true,
			Doc: "message id; message_id := expr per record. Default: pipeline:source:partition:offset of the record's position, the same for a record published again, so consumers can drop replays"},
		stdlib.Param{Name: "headers", Type: stdlib.MapOf(stdlib.String), Expr: true, Doc: "message headers, headers := expr; added to the record's own"},
		stdlib.Param{Name: "format", Type: stdlib.Enum("json", "string", "bytes"), Default: stdlib.Ident("json"), Doc: "message body format (sets content_type)"},
		stdlib.Param{Name: "persistent", Type: stdlib.Bool, Default: true, Doc: "delivery mode 2: a durable queue keeps the message across a broker restart"},
		stdlib.Param{Name: "mandatory", Type: stdlib.Bool, Default: true,
			Doc: "a message no queue takes is returned by the broker and its record goes through on_error (false: the broker drops it)"},
		stdlib.Param{Name: "max_unconfirmed", Type: stdlib.Int, Default: int64(10000),
			Doc: "most messages published and not yet confirmed: a write waits for confirms past it (with mandatory, every write waits)"},
		stdlib.Param{Name: "declare_exchange", Type: stdlib.Block(
			stdlib.Param{Name: "type", Type: stdlib.Enum(exchangeTypes...), Required: true, Doc: "exchange type"},
			stdlib.Param{Name: "durable", Type: stdlib.Bool, Default: true, Doc: "the exchange survives a broker restart"},
		), Doc: "declare the exchange at start (created unless it exists with these settings)"},
		stdlib.Param{Name: "declare_queue", Type: stdlib.Block(append(slices.Clone(declareQueueParams),
			stdlib.Param{Name: "name", Type: stdlib.String, Required: true, Doc: "queue name"},
			stdlib.Param{Name: "keys", Type: stdlib.ListOf(stdlib.String), Default: []any{"#"}, Doc: "binding keys to the sink's exchange (unless it is the default exchange)"},
		)...), Doc: "declare a queue at start, bound to the exchange, so that messages have somewhere to go"},
	),
	Check: checkSink,
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
		return newSink(cfg)
	},
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := append(checkConn(attrs), stdlib.Positive(attrs, "max_unconfirmed")...)
	if e, ok := attrs["exchange"].(string); ok && e == "" {
		if _, ok := attrs["declare_exchange"]; ok {
			errs = append(errs, stdlib.AttrError{Attr: "declare_exchange", Message: "the default exchange (exchange = \"\") cannot be declared: name an exchange"})
		}
	}
	if b, ok := attrs["declare_queue"].(map[string]any); ok {
		if n, ok := b["name"].(string); ok && n == "" {
			errs = append(errs, stdlib.AttrError{Attr: "declare_queue.name", Message: "queue name must not be empty"})
		}
	}
	return errs
}

// pub is a message published and not confirmed yet.
type pub struct {
	index    int // in the batch of the Write that published it
	exchange string
	key      string
	msg      amqp.Publishing
	dc       *amqp.DeferredConfirmation // nil: to publish (again)
	acked    bool
	returned *amqp.Return
}

type sink struct {
	cfg        stdlib.Config
	log        *slog.Logger
	conn       *conn
	exchange   string
	key        string
	val        codec.Codec
	ctype      string
	mode       uint8
	mandatory  bool
	maxPending int
	decl       declaration
	// indexes of routing_key, message_id and headers := in Record.Attrs, or -1
	keyAt, idAt, headersAt int

	bo      *retry.Backoff
	cn      *amqp.Connection
	ch      *amqp.Channel
	chClose chan *amqp.Error
	returns chan amqp.Return
	seen    []amqp.Return // returns not matched to a confirmed message yet
	out     []*pub        // published, not confirmed
	buf     []byte
}

func newSink(cfg stdlib.Config) (*sink, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	s := &sink{
		cfg:        cfg,
		log:        cfg.Log(),
		conn:       cn,
		exchange:   cfg.String("exchange"),
		key:        cfg.String("routing_key"),
		mandatory:  cfg.Bool("mandatory"),
		maxPending: int(cfg.Int("max_unconfirmed")),
		mode:       amqp.Transient,
		keyAt:      cfg.ExprIndex("routing_key"),
		idAt:       cfg.ExprIndex("message_id"),
		headersAt:  cfg.ExprIndex("headers"),
	}
	if cfg.Bool("persistent") {
		s.mode = amqp.Persistent
	}
	format := cfg.String("format")
	s.ctype = map[string]string{"json": "application/json", "string": "text/plain", "bytes": "application/octet-stream"}[format]
	if s.val, err = codec.New(format, nil, codec.Options{}); err != nil {
		return nil, err
	}
	if b, ok := cfg.Block("declare_exchange"); ok {
		s.decl.exchange, s.decl.exchangeType, s.decl.exchangeDur = s.exchange, b.String("type"), b.Bool("durable")
	}
	if b, ok := cfg.Block("declare_queue"); ok {
		s.decl.queue, s.decl.queueType, s.decl.queueDur = b.String("name"), b.String("type"), b.Bool("durable")
		if s.exchange != "" {
			s.decl.bindTo, s.decl.bindKeys = s.exchange, b.Strings("keys")
		}
	}
	return s, nil
}

func (s *sink) errorf(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// Open connects and declares what the stage asks for. The sink holds no
// positions: it is at least once.
func (s *sink) Open(ctx context.Context) ([]stdlib.Position, error) {
	s.bo = s.conn.backoff(s.log, "rabbitmq sink")
	return nil, s.connect(ctx)
}

func (s *sink) connect(ctx context.Context) error {
	cn, ch, err := s.conn.dialRetry(ctx, s.bo, func(ch *amqp.Channel) error {
		if err := s.decl.run(ch); err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return fmt.Errorf("confirm mode: %w", err)
		}
		return nil
	})
	if err != nil {
		return s.errorf("%w", err)
	}
	s.cn, s.ch = cn, ch
	s.chClose = ch.NotifyClose(make(chan *amqp.Error, 1))
	s.returns = ch.NotifyReturn(make(chan amqp.Return, 256))
	s.seen = s.seen[:0]
	return nil
}

// message builds the message of r.
func (s *sink) message(r *stdlib.Record, index int) (*pub, error) {
	p := &pub{index: index, exchange: s.exchange, key: s.key}
	if v, ok := r.Attr(s.keyAt); ok && v != nil {
		p.key = v.(string)
	}
	var err error
	start := len(s.buf)
	switch v := r.Value.(type) {
	case map[string]any:
		s.buf, err = s.val.Append(s.buf, v)
	case nil:
		s.buf, err = s.val.Append(s.buf, map[string]any{})
	default:
		var b []byte
		b, err = json.Marshal(v)
		s.buf = append(s.buf, b...)
	}
	if err != nil {
		s.buf = s.buf[:start]
		return nil, fmt.Errorf("encode value: %w", err)
	}
	// The message keeps its body until confirmed: copy it out of buf.
	body := slices.Clone(s.buf[start:])
	s.buf = s.buf[:start]
	id := s.cfg.Pipeline + ":" + r.Pos.Source + ":" + r.Pos.Partition + ":" + strconv.FormatInt(r.Pos.Offset, 10)
	if v, ok := r.Attr(s.idAt); ok && v != nil {
		id = v.(string)
	}
	var set map[string]any
	if v, ok := r.Attr(s.headersAt); ok {
		set, _ = v.(map[string]any)
	}
	p.msg = amqp.Publishing{
		Headers:      headerTable(r.Headers, set),
		ContentType:  s.ctype,
		DeliveryMode: s.mode,
		MessageId:    id,
		Timestamp:    r.Time,
		Body:         body,
	}
	if err := p.msg.Headers.Validate(); err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	return p, nil
}

// Write publishes the batch. With mandatory it waits for the broker's
// confirms, so that a message no queue took is rejected with its record;
// otherwise the confirms are awaited by Checkpoint (or once
// max_unconfirmed are outstanding).
func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	var rerrs stdlib.RecordErrors
	from := len(s.out)
	for i := range batch {
		p, err := s.message(&batch[i], i)
		if err != nil {
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		s.out = append(s.out, p)
	}
	if s.ch == nil {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	s.publish(ctx, s.out[from:])
	if s.mandatory || len(s.out) >= s.maxPending {
		returned, err := s.settle(ctx)
		if err != nil {
			return err
		}
		for _, p := range returned {
			rerrs = append(rerrs, stdlib.RecordError{Index: p.index, Err: fmt.Errorf("returned by the broker: %s (%d), exchange %q, routing key %q",
				p.returned.ReplyText, p.returned.ReplyCode, p.exchange, p.key)})
		}
		slices.SortFunc(rerrs, func(a, b stdlib.RecordError) int { return a.Index - b.Index })
	}
	if len(rerrs) > 0 {
		return rerrs
	}
	return nil
}

// publish sends ps on the current channel; a message that cannot be sent
// is left for settle to send again.
func (s *sink) publish(ctx context.Context, ps []*pub) {
	for _, p := range ps {
		if s.ch == nil {
			return
		}
		dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, p.key, s.mandatory, false, p.msg)
		if err != nil {
			return // the channel closed: settle reconnects
		}
		p.dc = dc
	}
}

// settle waits until the broker confirmed every message published,
// publishing again on a new connection what a closed channel or a
// negative confirm left unconfirmed, and returns the messages the broker
// returned as unroutable.
func (s *sink) settle(ctx context.Context) ([]*pub, error) {
	for {
		failed := false
		for _, p := range s.out {
			if p.acked {
				continue
			}
			if p.dc == nil {
				failed = true
				continue
			}
		wait:
			for {
				select {
				case <-p.dc.Done():
					break wait
				case r, ok := <-s.returns:
					s.noteReturn(r, ok)
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			if p.dc.Acked() {
				p.acked = true
			} else {
				p.dc, failed = nil, true
			}
		}
		// A return comes before its message's confirm.
		for more := true; more; {
			select {
			case r, ok := <-s.returns:
				more = s.noteReturn(r, ok)
			default:
				more = false
			}
		}
		s.matchReturns()
		if !failed {
			var returned []*pub
			for _, p := range s.out {
				if p.returned != nil {
					returned = append(returned, p)
				}
			}
			clear(s.out)
			s.out = s.out[:0]
			s.seen = s.seen[:0]
			s.bo.Reset()
			return returned, nil
		}
		// Some were not confirmed: a negative confirm (the broker could
		// not take them) or a closed channel.
		var cause error = errors.New("the broker refused messages (negative confirm)")
		if s.ch == nil || s.ch.IsClosed() {
			cause = s.closeCause()
			if !transient(cause) {
				return nil, s.errorf("publish to exchange %q on %s: %w", s.exchange, s.conn.where, cause)
			}
			s.dropChannel()
		}
		if err := s.bo.Wait(ctx, cause); err != nil {
			return nil, s.errorf("publish to exchange %q on %s: %w", s.exchange, s.conn.where, err)
		}
		if s.ch == nil {
			if err := s.connect(ctx); err != nil {
				return nil, err
			}
		}
		var again []*pub
		for _, p := range s.out {
			if !p.acked {
				p.returned = nil
				again = append(again, p)
			}
		}
		s.publish(ctx, again)
	}
}

// noteReturn keeps a return received from s.returns; ok false means the
// channel closed (and closed s.returns), which then blocks.
func (s *sink) noteReturn(r amqp.Return, ok bool) bool {
	if !ok {
		s.returns = nil
		return false
	}
	s.seen = append(s.seen, r)
	return true
}

// matchReturns gives each return seen to the first confirmed message not
// yet returned that it names: returns come in the order of publication.
func (s *sink) matchReturns() {
	for _, r := range s.seen {
		for _, p := range s.out {
			if p.acked && p.returned == nil && p.exchange == r.Exchange && p.key == r.RoutingKey && p.msg.MessageId == r.MessageId {
				p.returned = &r
				break
			}
		}
	}
	s.seen = s.seen[:0]
}

// closeCause is why the channel closed.
func (s *sink) closeCause() error {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case e, ok := <-s.chClose:
		if ok && e != nil {
			return e
		}
	case <-t.C:
	}
	return amqp.ErrClosed
}

func (s *sink) dropChannel() {
	if s.cn != nil {
		s.cn.Close()
	}
	s.cn, s.ch = nil, nil
}

// Checkpoint waits for the confirms of every message published so far.
func (s *sink) Checkpoint(ctx context.Context, _ stdlib.Checkpoint) error {
	if len(s.out) == 0 {
		return nil
	}
	if s.ch == nil {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	returned, err := s.settle(ctx)
	if err != nil {
		return err
	}
	if len(returned) > 0 {
		// Without mandatory the broker returns nothing; with it, Write
		// settled each batch. Nothing can be returned here.
		return s.errorf("%d messages returned at a checkpoint", len(returned))
	}
	return nil
}

func (s *sink) Close(context.Context) error {
	s.dropChannel()
	return nil
}
