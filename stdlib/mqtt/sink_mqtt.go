package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	paho "github.com/eclipse/paho.mqtt.golang"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the mqtt sink.
var SinkSpec = &stdlib.Spec{
	Kind:    stdlib.SinkKind,
	Name:    "mqtt",
	Summary: "publish records to MQTT topics (QoS 0, 1 or 2, retain); at least once with QoS 1 or 2",
	// A broker keeps no identity of a publisher's message across
	// sessions: a message published again after a crash is a new one.
	Delivery: []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.AtMostOnce},
	Schema:   true,
	Releases: true,
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "topic", Type: stdlib.String, Expr: true,
			Doc: "topic name to publish to (no wildcards); topic := expr per record; without it, the topic the record was read from"},
		stdlib.Param{Name: "qos", Type: stdlib.Int, Default: int64(1),
			Doc: "publish QoS: 1 or 2 wait for the broker's acknowledgement before a checkpoint completes (at_least_once); 0 does not (at_most_once only)"},
		stdlib.Param{Name: "retain", Type: stdlib.Bool, Default: false, Expr: true,
			Doc: "ask the broker to keep the message as its topic's retained message; retain := expr per record"},
	),
	Check: checkSink,
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
		return newSink(cfg)
	},
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := checkConn(attrs, 0)
	if q, ok := attrs["qos"].(int64); ok && q == 0 && attrs["delivery"] == stdlib.Ident(stdlib.AtLeastOnce) {
		errs = append(errs, stdlib.AttrError{Attr: "qos", Message: "qos 0 cannot honour at_least_once (nothing acknowledges a message): set qos = 1 or delivery = at_most_once"})
	}
	if t, ok := attrs["topic"].(string); ok && !strings.Contains(t, "${") {
		if err := checkTopicName(t); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "topic", Message: err.Error()})
		}
	}
	return errs
}

// checkTopicName checks a topic name to publish to: no wildcards.
func checkTopicName(t string) error {
	if err := checkTopicText(t, "topic"); err != nil {
		return err
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("topic %q: + and # are wildcards of topic filters, not allowed in a topic to publish to", t)
	}
	return nil
}

type sink struct {
	cfg      stdlib.Config
	conn     *conn
	val      codec.Codec
	topic    string
	topicAt  int
	retainAt int
	qos      byte
	retain   bool
	resend   bool // at_least_once: what a lost connection leaves unacknowledged is published again
	bo       *retry.Backoff
	sent     atomic.Int64 // payload bytes handed to the broker

	cl paho.Client
	// pending holds what was published since the last checkpoint, with
	// its token: Checkpoint waits for them.
	pending []pub
	buf     []byte

	mu   sync.Mutex
	gen  int
	lost error // the connection broke
}

// pub is one message published, kept until the broker acknowledged it.
type pub struct {
	topic   string
	payload []byte
	retain  bool
	tok     paho.Token
}

func newSink(cfg stdlib.Config) (*sink, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	s := &sink{cfg: cfg, conn: cn, topic: cfg.String("topic"), topicAt: cfg.ExprIndex("topic"), retainAt: cfg.ExprIndex("retain"),
		qos: byte(cfg.Int("qos")), retain: cfg.Bool("retain"), resend: cfg.Delivery != stdlib.AtMostOnce}
	if s.topic != "" {
		if err := checkTopicName(s.topic); err != nil {
			return nil, err
		}
	}
	if s.qos == 0 && cfg.Delivery == stdlib.AtLeastOnce {
		return nil, errors.New("qos 0 cannot honour at_least_once (nothing acknowledges a message): set qos = 1 or delivery = at_most_once")
	}
	if s.val, err = codec.New(cfg.String("format"), nil, codec.Options{}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sink) Open(ctx context.Context) ([]stdlib.Position, error) {
	s.bo = retry.New(s.conn.retry, s.conn.log, "mqtt sink")
	return nil, s.connect(ctx)
}

// connect connects with a clean session (what was not acknowledged is
// published again by the sink itself), retrying with s.bo.
func (s *sink) connect(ctx context.Context) error {
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.lost = nil
	s.mu.Unlock()
	o := s.conn.options(false, func(err error) {
		s.mu.Lock()
		if s.gen == gen {
			s.lost = err
		}
		s.mu.Unlock()
	})
	return retry.Do(ctx, s.bo, transient, func() (err error) {
		s.cl, err = s.conn.dial(ctx, o)
		return err
	})
}

// SentBytes implements stdlib.ByteCounter: the payloads handed to the
// broker.
func (s *sink) SentBytes() int64 { return s.sent.Load() }

func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	if s.lostErr() != nil {
		// Settle what the lost connection left before publishing more.
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	var rerrs stdlib.RecordErrors
	for i := range batch {
		p, err := s.message(&batch[i])
		if err != nil {
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		s.publish(&p)
		s.pending = append(s.pending, p)
		s.sent.Add(int64(len(p.payload)))
	}
	if len(rerrs) > 0 {
		return rerrs
	}
	return nil
}

// publish hands p to the client. A connection already lost fails the
// token at once; Checkpoint publishes it again.
func (s *sink) publish(p *pub) {
	p.tok = s.cl.Publish(p.topic, s.qos, p.retain, p.payload)
}

// message encodes a record; its payload is a copy of its own.
func (s *sink) message(r *stdlib.Record) (pub, error) {
	p := pub{topic: s.topic, retain: s.retain}
	if v, ok := r.Attr(s.topicAt); ok {
		p.topic, _ = v.(string)
	}
	if p.topic == "" {
		p.topic = r.Topic
	}
	if p.topic == "" {
		return p, fmt.Errorf("record has no topic and the sink sets none")
	}
	if err := checkTopicName(p.topic); err != nil {
		return p, err
	}
	if v, ok := r.Attr(s.retainAt); ok && v != nil {
		p.retain, _ = v.(bool)
	}
	var err error
	s.buf = s.buf[:0]
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
		return p, fmt.Errorf("encode payload: %w", err)
	}
	p.payload = slices.Clone(s.buf)
	return p, nil
}

// Checkpoint returns once the broker acknowledged every message published
// since the last one (QoS 1: PUBACK; QoS 2: PUBCOMP; QoS 0: written to the
// connection). What a lost connection left unacknowledged is published
// again on a new one (at_least_once: it may arrive twice) or, under
// at_most_once, counted as lost.
func (s *sink) Checkpoint(ctx context.Context, _ stdlib.Checkpoint) error {
	return s.flush(ctx)
}

// flush waits for every message pending, publishing again on a new
// connection what a lost one left unacknowledged.
func (s *sink) flush(ctx context.Context) error {
	for {
		var failed []pub
		var cause error
		for _, p := range s.pending {
			if err := s.await(ctx, p.tok); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !transient(err) {
					return fmt.Errorf("publish to %q: %w", p.topic, s.conn.redact(err))
				}
				failed, cause = append(failed, p), err
			}
		}
		s.pending = s.pending[:0]
		lost := s.lostErr()
		if len(failed) == 0 && lost == nil {
			s.bo.Reset()
			return nil
		}
		if cause == nil {
			cause = lost
		}
		if len(failed) > 0 && !s.resend {
			s.conn.log.Warn("mqtt sink: messages lost with the connection (at_most_once)", "messages", len(failed))
		}
		if err := s.reconnect(ctx, cause); err != nil {
			return err
		}
		if !s.resend {
			return nil
		}
		for i := range failed {
			s.publish(&failed[i])
		}
		s.pending = append(s.pending, failed...)
	}
}

// await waits for a publish token. paho fails the tokens of a clean
// session whose connection broke; one the broker leaves unanswered past
// twice the keep-alive interval is taken as lost with the connection.
func (s *sink) await(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	default:
	}
	return wait(ctx, tok, 2*s.conn.keepAlive)
}

// lostErr returns why the connection broke, or nil.
func (s *sink) lostErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// reconnect replaces a lost connection after the backoff.
func (s *sink) reconnect(ctx context.Context, cause error) error {
	s.conn.log.Warn("mqtt sink: connection lost", "error", s.conn.redact(cause).Error())
	s.cl.Disconnect(0)
	if err := s.bo.Wait(ctx, s.conn.redact(cause)); err != nil {
		return err
	}
	return s.connect(ctx)
}

func (s *sink) Close(context.Context) error {
	if s.cl != nil {
		s.cl.Disconnect(250)
	}
	return nil
}
