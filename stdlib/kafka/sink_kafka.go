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

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the kafka sink.
var SinkSpec = &stdlib.Spec{
	Kind:     stdlib.SinkKind,
	Name:     "kafka",
	Summary:  "write records to Kafka topics, exactly once through Kafka transactions",
	Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Schema:   true,
	// Untyped json encodes a row's fields as they are; other formats
	// encode the map it stands for (message).
	ReadsRows: true,
	// exactly_once: a partition that moves between instances is acquired
	// by its new owner's writer, which fences the old one (Acquire).
	Shared: func(map[string]any) bool { return true },
	Params: append(slices.Concat(connParams, registryParams, compatParams),
		stdlib.Param{Name: "topic", Type: stdlib.String, Expr: true, Doc: "topic to write to; topic := expr chooses it per record"},
		stdlib.Param{Name: "key", Type: stdlib.AnyValue, Expr: true, Doc: "message key, key := expr"},
		stdlib.Param{Name: "headers", Type: stdlib.MapOf(stdlib.String), Expr: true, Doc: "message headers, headers := expr"},
		stdlib.Param{Name: "format", Type: stdlib.Enum("json", "string", "bytes", "avro", "debezium", "debezium_avro", "json_schema", "protobuf"), Default: stdlib.Ident("json"), Doc: "value format; avro: Confluent wire format through the registry; debezium: a change record (postgres_cdc) as Debezium's JSON envelope; debezium_avro: the same envelope in Avro through the registry; json_schema and protobuf encode by the sink's schema (read from a JSON Schema or .proto file): with registry set, in the Confluent wire format (schema id; Protobuf's message indexes), else the plain payload"},
		stdlib.Param{Name: "key_format", Type: stdlib.Enum("string", "avro", "protobuf", "json_schema"), Default: stdlib.Ident("string"), Doc: "key format: string (text; numbers in decimal, other values as JSON), or avro, protobuf or json_schema through the registry (the key subject's latest schema)"},
		stdlib.Param{Name: "schema_id", Type: stdlib.Int, Doc: "format avro, protobuf or json_schema with a registry: write with this registered schema id"},
		stdlib.Param{Name: "register", Type: stdlib.Bool, Default: false, Doc: "format avro, protobuf or json_schema with a registry: register the sink's schema (Avro from its record type; the .proto files, imports as references; the JSON Schema document) as the subject's next version (refused when incompatible); default: the subject's latest version"},
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
	Check:      checkSink,
	CheckInput: checkSinkInput,
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
		return newSink(cfg)
	},
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := append(tlsconf.Check(attrs), retry.Check(attrs)...)
	errs = append(errs, checkRegistry(attrs)...)
	errs = append(errs, checkKeySubject(attrs)...)
	if _, ok := attrs["schema_id"]; ok && attrs["register"] == true {
		errs = append(errs, stdlib.AttrError{Attr: "register", Message: "set schema_id or register, not both"})
	}
	if v, ok := attrs["schema_id"].(int64); ok && v < 1 {
		errs = append(errs, stdlib.AttrError{Attr: "schema_id", Message: "schema_id must be positive"})
	}
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
	regVal      wireEncoder // format through the registry
	regKey      wireEncoder // key_format through the registry
	balancer    kafka.Balancer
	compression kafka.Compression
	batchBytes  int64
	linger      time.Duration
	// indexes of key, topic and headers := in Record.Attrs, or -1
	keyAt, topicAt, headersAt int

	link *link
	bo   *retry.Backoff // Write and Checkpoint

	// at_least_once
	w       *kafka.Writer
	wcl     *kafka.Client // w's
	mu      sync.Mutex
	cond    *sync.Cond
	pending int             // messages handed to w, not yet acknowledged
	failed  []kafka.Message // messages a broken connection left unacknowledged
	ferr    error           // why they failed
	werr    error           // a failure that is not transient

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
		return nil, err
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
	reg, err := newRegistry(cfg)
	if err != nil {
		return nil, err
	}
	if viaRegistry(cfg, cfg.String("key_format")) {
		if s.regKey, err = newEncoder(cfg, reg, true); err != nil {
			return nil, err
		}
	}
	if viaRegistry(cfg, cfg.String("format")) {
		if s.regVal, err = newEncoder(cfg, reg, false); err != nil {
			return nil, err
		}
	} else if s.val, err = codec.New(cfg.String("format"), schemaFileType(cfg), codec.Options{}); err != nil {
		return nil, err
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
		return nil, fmt.Errorf("unknown compression %q", cfg.String("compression"))
	}
	switch cfg.String("partitioner") {
	case "hash":
		s.balancer = &kafka.Murmur2Balancer{Consistent: true}
	case "round_robin":
		s.balancer = &kafka.RoundRobin{}
	case "source":
		s.balancer = sourceBalancer{hash: &kafka.Murmur2Balancer{Consistent: true}}
	default:
		return nil, fmt.Errorf("unknown partitioner %q", cfg.String("partitioner"))
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
	// The writer schemas of a fixed topic are settled before anything is
	// written: a refused registration or a subject without a schema stops
	// the run here rather than failing every record.
	for _, e := range []wireEncoder{s.regVal, s.regKey} {
		if e != nil && (s.topic != "" || e.fixed()) {
			if err := e.open(ctx, s.topic); err != nil {
				return nil, err
			}
		}
	}
	s.link = newLink(s.conn)
	s.bo = s.conn.backoff(s.log, "kafka sink")
	if ct, ok := s.cfg.Block("create_topic"); ok && s.topic != "" {
		parts, repl := int(ct.Int("partitions")), int(ct.Int("replication"))
		err := s.do(ctx, func(cl *kafka.Client) error {
			// An attempt whose answer was lost may have created it.
			created, err := createTopic(ctx, cl, s.topic, parts, repl, nil)
			s.created = s.created || created
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if s.exactlyOnce() {
		return s.openEOS(ctx)
	}
	// The writer connects on first use: see now that the brokers answer.
	err := s.do(ctx, func(cl *kafka.Client) error {
		_, err := cl.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.cond = sync.NewCond(&s.mu)
	s.wcl = s.link.client()
	s.w = s.writer(s.wcl)
	return nil, nil
}

// do runs op until it succeeds, retrying transient failures on a fresh
// transport with backoff until retry_timeout.
func (s *sink) do(ctx context.Context, op func(cl *kafka.Client) error) error {
	return s.link.do(ctx, s.conn.backoff(s.log, "kafka sink"), op)
}

// writer returns an at_least_once writer over cl's transport. It retries a
// failed batch a few times itself; what still fails on a lost connection
// is written again by [sink.resend].
func (s *sink) writer(cl *kafka.Client) *kafka.Writer {
	return &kafka.Writer{
		Addr:         cl.Addr,
		Transport:    cl.Transport,
		Balancer:     s.balancer,
		BatchSize:    10000,
		BatchBytes:   s.batchBytes,
		BatchTimeout: max(s.linger, time.Nanosecond), // kafka-go takes 0 for 1s
		RequiredAcks: kafka.RequireAll,
		Compression:  s.compression,
		Async:        true,
		MaxAttempts:  3,
		Completion:   s.completed,
	}
}

func (s *sink) completed(msgs []kafka.Message, err error) {
	s.mu.Lock()
	s.pending -= len(msgs)
	switch {
	case err == nil:
	case transient(err):
		s.failed = append(s.failed, msgs...)
		s.ferr = err
	case s.werr == nil:
		s.werr = fmt.Errorf("write: %w", err)
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// send hands msgs to the writer. Messages a lost connection refuses wait
// in failed for resend.
func (s *sink) send(ctx context.Context, msgs []kafka.Message) error {
	s.mu.Lock()
	err := s.werr
	s.pending += len(msgs)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.w.WriteMessages(ctx, msgs...); err != nil {
		s.completed(msgs, err)
		if ctx.Err() != nil || !transient(err) {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// resend writes again, after waiting for the backoff and on a fresh
// transport, the messages a lost connection left unacknowledged. They may
// have been written already: at_least_once.
func (s *sink) resend(ctx context.Context) error {
	s.mu.Lock()
	n, cause, werr := len(s.failed), s.ferr, s.werr
	s.mu.Unlock()
	if werr != nil || n == 0 {
		return werr
	}
	if err := s.bo.Wait(ctx, cause); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// Closing the writer waits for its batches: those that fail join
	// failed.
	if err := s.w.Close(); err != nil {
		s.log.Debug("kafka sink: closing the writer of a lost connection", "err", err)
	}
	s.wcl = s.link.renew(s.wcl)
	s.w = s.writer(s.wcl)
	s.mu.Lock()
	msgs := s.failed
	s.failed, s.ferr = nil, nil
	s.mu.Unlock()
	return s.send(ctx, msgs)
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
	if s.regKey != nil && key != nil {
		if m.Key, err = s.regKey.appendValue(nil, m.Topic, key); err != nil {
			return m, buf, fmt.Errorf("encode key: %w", err)
		}
	} else if m.Key, err = encodeKey(key); err != nil {
		return m, buf, err
	}
	start := len(buf)
	value := r.Value
	if row, ok := value.(*stdlib.Row); ok {
		if fc, ok := s.val.(codec.FieldsCodec); ok && s.regVal == nil && fc.Fields() {
			// The bytes the map it stands for encodes to.
			buf, err = fc.AppendFields(buf, row.Shape().Names(), row.Vals())
		} else {
			value = row.Map()
		}
	}
	switch v := value.(type) {
	case *stdlib.Row: // encoded above
	case map[string]any:
		if s.regVal == nil {
			buf, err = s.val.Append(buf, v)
			break
		}
		buf, err = s.regVal.appendValue(buf, m.Topic, v)
	case nil:
		if s.regVal != nil {
			err = errors.New("a null value has no record encoding through the registry")
			break
		}
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
		// What a lost connection left unwritten goes first.
		if err := s.resend(ctx); err != nil {
			return err
		}
		if err := s.send(ctx, msgs); err != nil {
			return err
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
	// Wait until every message handed to the writer is acknowledged,
	// writing again what a lost connection left unacknowledged.
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	for {
		s.mu.Lock()
		for s.pending > 0 && s.werr == nil && ctx.Err() == nil {
			s.cond.Wait()
		}
		werr, failed := s.werr, len(s.failed)
		s.mu.Unlock()
		switch {
		case werr != nil:
			return werr
		case ctx.Err() != nil:
			return ctx.Err()
		case failed == 0:
			s.bo.Reset()
			return nil
		}
		if err := s.resend(ctx); err != nil {
			return err
		}
	}
}

func (s *sink) Close(ctx context.Context) error {
	var err error
	if s.w != nil {
		err = s.w.Close()
	}
	if s.eos != nil {
		err = errors.Join(err, s.closeEOS(ctx))
	}
	if s.link != nil {
		s.link.close()
	}
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// schemaFileType is the record type the value codec encodes by: the sink's
// for the formats whose schema comes from a file (protobuf, json_schema);
// json and the raw formats write what they get.
func schemaFileType(cfg stdlib.Config) *types.Type {
	if f := cfg.String("format"); f == "protobuf" || f == "json_schema" {
		return cfg.RecordType()
	}
	return nil
}
