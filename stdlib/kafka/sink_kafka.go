package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the kafka sink.
var SinkSpec = &stdlib.Spec{
	Kind:     stdlib.SinkKind,
	Name:     "kafka",
	Summary:  "write records to Kafka topics, exactly once through Kafka transactions",
	Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Schema:   true,
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "topic", Type: stdlib.String, Expr: true, Doc: "topic to write to; topic := expr chooses it per record"},
		stdlib.Param{Name: "key", Type: stdlib.AnyValue, Expr: true, Doc: "message key, key := expr"},
		stdlib.Param{Name: "headers", Type: stdlib.MapOf(stdlib.String), Expr: true, Doc: "message headers, headers := expr"},
		stdlib.Param{Name: "format", Type: stdlib.Enum("json", "string", "bytes"), Default: stdlib.Ident("json"), Doc: "value format"},
		stdlib.Param{Name: "partitioner", Type: stdlib.Enum("hash", "round_robin", "source"), Default: stdlib.Ident("hash"),
			Doc: "hash of the key (murmur2, as the Java client), round_robin, or the partition the record was read from"},
		stdlib.Param{Name: "compression", Type: stdlib.Enum("none", "gzip", "snappy", "lz4", "zstd"), Default: stdlib.Ident("none")},
		stdlib.Param{Name: "batch_size", Type: stdlib.Size, Default: int64(1 << 20), Doc: "largest batch sent to one partition"},
		stdlib.Param{Name: "linger", Type: stdlib.Duration, Default: 5 * time.Millisecond, Doc: "longest a partial batch waits for more records; 0 sends at once"},
		stdlib.Param{Name: "transaction_timeout", Type: stdlib.Duration, Default: time.Minute, Doc: "exactly_once: transaction timeout enforced by the broker"},
		stdlib.Param{Name: "create_topic", Type: stdlib.Block(
			stdlib.Param{Name: "partitions", Type: stdlib.Int, Default: int64(1)},
			stdlib.Param{Name: "replication", Type: stdlib.Int, Default: int64(1)},
		), Doc: "create the topic at start unless it exists"},
	),
	Check: checkSink,
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
		return newSink(cfg)
	},
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := checkTLS(attrs)
	if ct, ok := attrs["create_topic"].(map[string]any); ok {
		if n, ok := ct["partitions"].(int64); ok && n < 1 {
			errs = append(errs, stdlib.AttrError{Attr: "create_topic.partitions", Message: "partitions must be at least 1"})
		}
		if n, ok := ct["replication"].(int64); ok && n < 1 {
			errs = append(errs, stdlib.AttrError{Attr: "create_topic.replication", Message: "replication must be at least 1"})
		}
	}
	if v, ok := attrs["batch_size"].(int64); ok && v < 1 {
		errs = append(errs, stdlib.AttrError{Attr: "batch_size", Message: "batch_size must be positive"})
	}
	if v, ok := attrs["linger"].(time.Duration); ok && v < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "linger", Message: "linger must not be negative"})
	}
	return errs
}

// OffsetsTopic is the compacted topic where exactly-once sinks keep the
// source positions their committed transactions cover.
const OffsetsTopic = "__pipe_offsets"

type sink struct {
	cfg         stdlib.Config
	sent        atomic.Int64 // bytes of keys and values handed to the broker
	log         *slog.Logger
	conn        *conn
	topic       string
	val         codec.Codec
	balancer    kafka.Balancer
	compression kafka.Compression
	batchBytes  int64
	linger      time.Duration
	// indexes of key, topic and headers := in Record.Attrs, or -1
	keyAt, topicAt, headersAt int

	tr *kafka.Transport
	cl *kafka.Client

	// at_least_once
	w       *kafka.Writer
	mu      sync.Mutex
	cond    *sync.Cond
	pending int
	werr    error

	// exactly_once
	eos *eosState
	// created is set when Open created the topic; target is the identity
	// of the sink's topic (see [sink.holds]).
	created bool
	target  string
}

func newSink(cfg stdlib.Config) (*sink, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", cfg.Stage, err)
	}
	s := &sink{
		cfg:        cfg,
		log:        cfg.Logger,
		conn:       cn,
		topic:      cfg.String("topic"),
		batchBytes: cfg.Int("batch_size"),
		linger:     cfg.Duration("linger"),
		keyAt:      cfg.ExprIndex("key"),
		topicAt:    cfg.ExprIndex("topic"),
		headersAt:  cfg.ExprIndex("headers"),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.val, err = codec.New(cfg.String("format"), nil, codec.Options{}); err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", cfg.Stage, err)
	}
	switch cfg.String("compression") {
	case "none":
	case "gzip":
		s.compression = kafka.Gzip
	case "snappy":
		s.compression = kafka.Snappy
	case "lz4":
		s.compression = kafka.Lz4
	case "zstd":
		s.compression = kafka.Zstd
	default:
		return nil, fmt.Errorf("kafka sink %q: unknown compression %q", cfg.Stage, cfg.String("compression"))
	}
	switch cfg.String("partitioner") {
	case "hash":
		s.balancer = &kafka.Murmur2Balancer{Consistent: true}
	case "round_robin":
		s.balancer = &kafka.RoundRobin{}
	case "source":
		s.balancer = sourceBalancer{hash: &kafka.Murmur2Balancer{Consistent: true}}
	default:
		return nil, fmt.Errorf("kafka sink %q: unknown partitioner %q", cfg.Stage, cfg.String("partitioner"))
	}
	return s, nil
}

// sourceBalancer keeps the partition a record was read from (carried in
// Message.WriterData), falling back to the key hash.
type sourceBalancer struct{ hash kafka.Balancer }

func (b sourceBalancer) Balance(msg kafka.Message, partitions ...int) int {
	if p, ok := msg.WriterData.(int32); ok && p >= 0 && len(partitions) > 0 {
		return partitions[int(p)%len(partitions)]
	}
	return b.hash.Balance(msg, partitions...)
}

func (s *sink) exactlyOnce() bool { return s.cfg.Delivery == stdlib.ExactlyOnce }

func (s *sink) Open(ctx context.Context) ([]stdlib.Position, error) {
	s.tr = s.conn.transport()
	s.cl = s.conn.client(s.tr)
	if ct, ok := s.cfg.Block("create_topic"); ok && s.topic != "" {
		parts, repl := int(ct.Int("partitions")), int(ct.Int("replication"))
		var err error
		if s.created, err = createTopic(ctx, s.cl, s.topic, parts, repl, nil); err != nil {
			return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
		}
	}
	if s.exactlyOnce() {
		return s.openEOS(ctx)
	}
	s.cond = sync.NewCond(&s.mu)
	s.w = &kafka.Writer{
		Addr:         s.cl.Addr,
		Transport:    s.tr,
		Balancer:     s.balancer,
		BatchSize:    10000,
		BatchBytes:   s.batchBytes,
		BatchTimeout: max(s.linger, time.Nanosecond), // kafka-go takes 0 for 1s
		RequiredAcks: kafka.RequireAll,
		Compression:  s.compression,
		Async:        true,
		MaxAttempts:  10,
		Completion:   s.completed,
	}
	return nil, nil
}

func (s *sink) completed(msgs []kafka.Message, err error) {
	s.mu.Lock()
	s.pending -= len(msgs)
	if err != nil && s.werr == nil {
		s.werr = fmt.Errorf("kafka sink %q: write: %w", s.cfg.Stage, err)
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// message converts a record to a message; topic is the record's own or
// the sink's.
func (s *sink) message(r *stdlib.Record, buf []byte) (kafka.Message, []byte, error) {
	var m kafka.Message
	// A fixed topic wins over the topic a record was read from; without
	// one, topic := expr (or the source topic) decides.
	m.Topic = s.topic
	if v, ok := r.Attr(s.topicAt); ok && m.Topic == "" {
		m.Topic, _ = v.(string)
	}
	if m.Topic == "" {
		m.Topic = r.Topic
	}
	if m.Topic == "" {
		return m, buf, errors.New("record has no topic and the sink sets none")
	}
	key := r.Key
	if v, ok := r.Attr(s.keyAt); ok {
		key = v
	}
	var err error
	if m.Key, err = encodeKey(key); err != nil {
		return m, buf, err
	}
	start := len(buf)
	switch v := r.Value.(type) {
	case map[string]any:
		buf, err = s.val.Append(buf, v)
	case nil:
		buf, err = s.val.Append(buf, map[string]any{})
	default:
		var b []byte
		b, err = json.Marshal(v)
		buf = append(buf, b...)
	}
	if err != nil {
		return m, buf[:start], fmt.Errorf("encode value: %w", err)
	}
	m.Value = buf[start:len(buf):len(buf)]
	set, _ := r.Attr(s.headersAt)
	if m.Headers, err = messageHeaders(r.Headers, set); err != nil {
		return m, buf[:start], err
	}
	m.Time = r.Time
	m.WriterData = r.Partition
	return m, buf, nil
}

// messageHeaders returns a record's headers with those of set (headers :=
// expr, a map or nil) replacing the ones of the same name, in key order;
// a value is encoded as a key is.
func messageHeaders(hs []stdlib.Header, set any) ([]kafka.Header, error) {
	m, _ := set.(map[string]any)
	if len(hs) == 0 && len(m) == 0 {
		return nil, nil
	}
	out := make([]kafka.Header, 0, len(hs)+len(m))
	for _, h := range hs {
		if _, ok := m[h.Key]; !ok {
			out = append(out, kafka.Header{Key: h.Key, Value: h.Value})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v, err := encodeKey(m[k])
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		out = append(out, kafka.Header{Key: k, Value: v})
	}
	return out, nil
}

// messages converts a batch; records that cannot be encoded are reported
// as RecordErrors and left out.
func (s *sink) messages(batch []stdlib.Record) ([]kafka.Message, []int, stdlib.RecordErrors) {
	msgs := make([]kafka.Message, 0, len(batch))
	from := make([]int, 0, len(batch))
	buf := make([]byte, 0, 128*len(batch))
	var rerrs stdlib.RecordErrors
	for i := range batch {
		var (
			m   kafka.Message
			err error
		)
		m, buf, err = s.message(&batch[i], buf)
		if err != nil {
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		msgs = append(msgs, m)
		from = append(from, i)
	}
	return msgs, from, rerrs
}

// SentBytes implements stdlib.ByteCounter: the keys and values of the
// messages handed to the broker.
func (s *sink) SentBytes() int64 { return s.sent.Load() }

func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	msgs, from, rerrs := s.messages(batch)
	var n int
	for i := range msgs {
		n += len(msgs[i].Key) + len(msgs[i].Value)
	}
	defer s.sent.Add(int64(n))
	if s.exactlyOnce() {
		if err := s.writeEOS(ctx, batch, msgs, from); err != nil {
			return err
		}
	} else if len(msgs) > 0 {
		s.mu.Lock()
		err := s.werr
		s.pending += len(msgs)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if err := s.w.WriteMessages(ctx, msgs...); err != nil {
			s.completed(msgs, err)
			return fmt.Errorf("kafka sink %q: write: %w", s.cfg.Stage, err)
		}
	}
	if len(rerrs) > 0 {
		return rerrs
	}
	return nil
}

func (s *sink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if s.exactlyOnce() {
		return s.checkpointEOS(ctx, cp)
	}
	// Wait until every message handed to the writer is acknowledged.
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.pending > 0 && s.werr == nil && ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.werr != nil {
		return s.werr
	}
	return ctx.Err()
}

func (s *sink) Close(ctx context.Context) error {
	var err error
	if s.w != nil {
		err = s.w.Close()
	}
	if s.eos != nil {
		err = errors.Join(err, s.closeEOS(ctx))
	}
	if s.tr != nil {
		s.tr.CloseIdleConnections()
	}
	if err != nil {
		return fmt.Errorf("kafka sink %q: close: %w", s.cfg.Stage, err)
	}
	return nil
}
