package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec describes the mqtt source.
var SourceSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "mqtt",
	Summary: "messages from MQTT topic filters (MQTT 3.1.1, persistent session), acknowledged once a checkpoint covers them: at least once",
	Schema:  true,
	Meta:    []stdlib.MetaField{stdlib.MetaTopic, stdlib.MetaOffset, stdlib.MetaQoS, stdlib.MetaRetained, stdlib.MetaPacketID},
	// MQTT has no position to read again from and no identity of a
	// message to drop a redelivery by: a message is redelivered until
	// acknowledged, so at most once after a crash is not possible either
	// way round, and exactly once not at all.
	Delivery: []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.AtMostOnce},
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "topic", Type: stdlib.String, Doc: "topic filter to subscribe to, + and # wildcards allowed (or topics)"},
		stdlib.Param{Name: "topics", Type: stdlib.ListOf(stdlib.String), Doc: "topic filters to subscribe to (or topic)"},
		stdlib.Param{Name: "qos", Type: stdlib.Int, Default: int64(1),
			Doc: "subscription QoS, 1 or 2: messages are acknowledged after the checkpoint covering them either way; a message published at QoS 0 arrives at QoS 0 and is never redelivered"},
		stdlib.Param{Name: "max_inflight", Type: stdlib.Int, Default: int64(20),
			Doc: "how many unacknowledged messages the broker sends this client (Mosquitto: max_inflight_messages, 20 by default); when that many wait, a checkpoint is taken at once"},
	),
	Output: rawOutput,
	Check:  checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newSource(cfg)
	},
}

// rawOutput is the record type of the raw payload formats.
func rawOutput(attrs map[string]any) *types.Type {
	switch attrs["format"] {
	case stdlib.Ident("string"):
		return types.RecordOf(&types.Field{Name: "value", Type: types.StringType})
	case stdlib.Ident("bytes"):
		return types.RecordOf(&types.Field{Name: "value", Type: types.BytesType})
	}
	return nil
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	errs := checkConn(attrs, 1)
	_, one := attrs["topic"]
	_, many := attrs["topics"]
	switch {
	case one && many:
		errs = append(errs, stdlib.AttrError{Attr: "topics", Message: "set topic or topics, not both"})
	case !one && !many:
		errs = append(errs, stdlib.AttrError{Attr: "topic", Message: "topic or topics is required"})
	}
	if f, ok := attrs["topic"].(string); ok {
		if err := checkFilter(f); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "topic", Message: err.Error()})
		}
	}
	if fs, ok := attrs["topics"].([]any); ok {
		if len(fs) == 0 {
			errs = append(errs, stdlib.AttrError{Attr: "topics", Message: "topics is empty"})
		}
		for _, f := range fs {
			if f, ok := f.(string); ok {
				if err := checkFilter(f); err != nil {
					errs = append(errs, stdlib.AttrError{Attr: "topics", Message: err.Error()})
				}
			}
		}
	}
	if n, ok := attrs["max_inflight"].(int64); ok && (n < 1 || n > 65535) {
		errs = append(errs, stdlib.AttrError{Attr: "max_inflight", Message: "max_inflight must be 1 to 65535"})
	}
	return errs
}

// checkFilter checks a topic filter (MQTT 3.1.1 §4.7): + stands for a
// whole level, # for the last levels; a shared subscription
// ($share/group/filter) names its group first.
func checkFilter(f string) error {
	if strings.Contains(f, "${") {
		return nil // a reference, checked once resolved
	}
	if err := checkTopicText(f, "topic filter"); err != nil {
		return err
	}
	g := f
	if rest, ok := strings.CutPrefix(f, "$share/"); ok {
		group, filter, ok := strings.Cut(rest, "/")
		if !ok || group == "" || filter == "" || strings.ContainsAny(group, "+#") {
			return fmt.Errorf("topic filter %q: a shared subscription is $share/GROUP/FILTER", f)
		}
		g = filter
	}
	levels := strings.Split(g, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic filter %q: # must be the last level", f)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("topic filter %q: + and # stand for whole levels (a/+/c, a/#)", f)
		}
	}
	return nil
}

// checkTopicText checks what topic names and filters share: not empty,
// at most 65535 bytes of UTF-8 without NUL.
func checkTopicText(s, what string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > 65535:
		return fmt.Errorf("%s is longer than 65535 bytes", what)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%s %q holds a NUL character", what, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	return nil
}

// maxQueue bounds the messages received and not yet read: past it the
// client stops reading from the broker until Read catches up. QoS 1 and 2
// deliveries are bounded by the broker's in-flight window long before.
const maxQueue = 1 << 16

// maxBatch is the most records one Read returns.
const maxBatch = 1024

type source struct {
	cfg         stdlib.Config
	conn        *conn
	log         *slog.Logger
	filters     map[string]byte
	maxInflight int
	val         codec.Codec
	part        string // the one partition: the client id
	ident       string
	bo          *retry.Backoff
	handover    stdlib.Handover // nil when the executor does not run the source

	// Read and Commit run on one goroutine: the fields below are theirs.
	cl      paho.Client
	next    int64   // offset of the next record
	pending []ackOf // records emitted and not acknowledged, by offset

	// mu guards what paho's goroutines hand over.
	mu     sync.Mutex
	room   *sync.Cond // signalled when the queue shrinks or the connection changes
	gen    int        // connection number: what an older connection reports is ignored
	queue  []paho.Message
	lost   error // the connection broke: Read reconnects
	closed bool
	wake   chan struct{}
}

// ackOf is an emitted message awaiting the checkpoint that covers it.
type ackOf struct {
	off int64
	gen int
	msg paho.Message
}

func newSource(cfg stdlib.Config) (*source, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	s := &source{cfg: cfg, conn: cn, log: cn.log, filters: map[string]byte{},
		maxInflight: int(cfg.Int("max_inflight")), wake: make(chan struct{}, 1)}
	s.room = sync.NewCond(&s.mu)
	qos := byte(cfg.Int("qos"))
	for _, f := range append(cfg.Strings("topics"), cfg.String("topic")) {
		if f != "" {
			if err := checkFilter(f); err != nil {
				return nil, err
			}
			s.filters[f] = qos
		}
	}
	if len(s.filters) == 0 {
		return nil, errors.New("no topic")
	}
	if cfg.Tasks > 1 {
		for f := range s.filters {
			if !strings.HasPrefix(f, "$share/") {
				return nil, fmt.Errorf("with tasks > 1 every task would receive every message of %q: subscribe to shared subscriptions ($share/GROUP/FILTER) or run one task", f)
			}
		}
	}
	if s.val, err = codec.New(cfg.String("format"), cfg.Schema, codec.Options{}); err != nil {
		return nil, err
	}
	s.part = cn.clientID
	s.ident = cn.identity()
	return s, nil
}

func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	if resume == nil {
		resume = stdlib.ResumeMap(nil)
	}
	s.handover, _ = resume.(stdlib.Handover)
	// MQTT has no offsets: a record's offset counts the messages this
	// session handed on, on from the stored position, so that offsets
	// grow across runs. No sink drops a record as a replay of one with
	// the same offset: no exactly-once sink can take this source's
	// records (Delivery), and only those hold positions.
	if last, ok := resume.Resume(s.part, s.ident); ok {
		s.next = last + 1
	}
	s.bo = retry.New(s.conn.retry, s.log, "mqtt source")
	return s.connect(ctx)
}

// connect connects (a new connection number) and subscribes, retrying
// with s.bo until retry_timeout.
func (s *source) connect(ctx context.Context) error {
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.lost = nil
	s.room.Broadcast()
	s.mu.Unlock()
	o := s.conn.options(true, func(err error) { s.connLost(gen, err) })
	// Messages of the session arrive as soon as the broker accepts the
	// connection, before any SUBSCRIBE: the default handler takes them
	// all. They are acknowledged by Commit only.
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { s.received(gen, m) })
	o.SetAutoAckDisabled(true)
	o.SetOrderMatters(true)
	return retry.Do(ctx, s.bo, transient, func() error {
		cl, err := s.conn.dial(ctx, o)
		if err != nil {
			return err
		}
		// Subscribing again replaces the session's subscriptions with
		// the same ones (the broker sends their retained messages again).
		tok := cl.SubscribeMultiple(s.filters, nil)
		if err := wait(ctx, tok, s.conn.timeout+time.Second); err != nil {
			cl.Disconnect(0)
			return fmt.Errorf("subscribe: %w", err)
		}
		if st, ok := tok.(*paho.SubscribeToken); ok {
			for f, q := range st.Result() {
				if q == 0x80 {
					cl.Disconnect(0)
					return fmt.Errorf("subscribe: the broker refused topic filter %q", f)
				}
			}
		}
		s.cl = cl
		return nil
	})
}

// received is paho's message handler: it queues m for Read.
func (s *source) received(gen int, m paho.Message) {
	s.mu.Lock()
	for len(s.queue) >= maxQueue && s.gen == gen && !s.closed {
		s.room.Wait()
	}
	if s.gen == gen && !s.closed {
		s.queue = append(s.queue, m)
	}
	s.mu.Unlock()
	s.signal()
}

// connLost is paho's connection-lost handler.
func (s *source) connLost(gen int, err error) {
	s.mu.Lock()
	if s.gen == gen && !s.closed {
		s.lost = err
	}
	s.room.Broadcast()
	s.mu.Unlock()
	s.signal()
}

func (s *source) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// inflight counts the QoS 1 and 2 messages of the current connection
// waiting for their acknowledgement.
func (s *source) inflight(gen int) int {
	n := 0
	for _, a := range s.pending {
		if a.gen == gen && a.msg.Qos() > 0 {
			n++
		}
	}
	return n
}

func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	idle := time.NewTimer(100 * time.Millisecond)
	defer idle.Stop()
	for {
		s.mu.Lock()
		gen, lost := s.gen, s.lost
		var msgs []paho.Message
		if lost == nil && len(s.queue) > 0 {
			n := min(len(s.queue), maxBatch)
			msgs = slices.Clone(s.queue[:n])
			s.queue = slices.Delete(s.queue, 0, n)
			s.room.Broadcast()
		}
		s.mu.Unlock()
		switch {
		case lost != nil:
			if err := s.reconnect(ctx, lost); err != nil {
				return nil, err
			}
			continue
		case len(msgs) > 0:
			return s.records(gen, msgs), nil
		case s.handover != nil && s.inflight(gen) >= s.maxInflight:
			// The broker sends nothing more until some of these are
			// acknowledged: complete a checkpoint now rather than at the
			// interval (Settle commits, which acknowledges them).
			if err := s.handover.Settle(ctx); err != nil {
				return nil, err
			}
			continue
		}
		select {
		case <-s.wake:
		case <-idle.C:
			return nil, nil // let the task commit
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// reconnect replaces a lost connection, waiting for the backoff first.
// The session keeps the messages not acknowledged: the broker sends them
// again, and they are handed on again (at least once).
func (s *source) reconnect(ctx context.Context, cause error) error {
	s.log.Warn("mqtt source: connection lost", "error", s.conn.redact(cause).Error())
	if s.cl != nil {
		s.cl.Disconnect(0)
	}
	if err := s.bo.Wait(ctx, s.conn.redact(cause)); err != nil {
		return err
	}
	return s.connect(ctx)
}

// records turns messages into records and keeps them for Commit.
func (s *source) records(gen int, msgs []paho.Message) []stdlib.Record {
	out := s.cfg.Recycler.Batch(len(msgs))
	metas := make([]stdlib.MessageMeta, len(msgs))
	for i, m := range msgs {
		off := s.next
		s.next++
		payload := m.Payload()
		metas[i] = stdlib.MessageMeta{QoS: int(m.Qos()), Retained: m.Retained(), PacketID: int(m.MessageID())}
		r := &out[i]
		*r = stdlib.Record{
			Topic:     m.Topic(),
			Partition: -1,
			Pos:       stdlib.Position{Source: s.cfg.Stage, Partition: s.part, Offset: off},
			Raw:       payload,
			Msg:       &metas[i],
		}
		v, err := s.val.Decode(payload)
		if err != nil {
			// The stage's error policy decides; the message is
			// acknowledged with the checkpoint all the same.
			r.Err = fmt.Errorf("decode payload of a message on %q: %w", m.Topic(), err)
		}
		r.Value = v
		if m.Qos() > 0 {
			s.pending = append(s.pending, ackOf{off: off, gen: gen, msg: m})
		}
	}
	return out
}

// Commit acknowledges the messages the completed checkpoint covers. A
// message received on an earlier connection is not acknowledged: the
// broker sent it again on the new one, and the copy is acknowledged in
// its turn.
func (s *source) Commit(_ context.Context, positions []stdlib.Position) error {
	upto, ok := int64(0), false
	for _, p := range positions {
		if p.Partition == s.part && (!ok || p.Offset > upto) {
			upto, ok = p.Offset, true
		}
	}
	if !ok {
		return nil
	}
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()
	n := 0
	for n < len(s.pending) && s.pending[n].off <= upto {
		if a := s.pending[n]; a.gen == gen {
			a.msg.Ack()
		}
		n++
	}
	s.pending = slices.Delete(s.pending, 0, n)
	return nil
}

// Close disconnects; the broker keeps the session, with the messages not
// acknowledged, for the next run.
func (s *source) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.room.Broadcast()
	s.mu.Unlock()
	if s.cl != nil {
		s.cl.Disconnect(250)
	}
	return nil
}
