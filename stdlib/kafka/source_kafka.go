package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec describes the kafka source.
var SourceSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "kafka",
	Summary: "read records from Kafka topics through a consumer group",
	Schema:  true,
	// Instances of a pipeline share the partitions through the group.
	Shared: func(attrs map[string]any) bool { g, _ := attrs["group"].(string); return g != "" },
	Meta: []stdlib.MetaField{stdlib.MetaTopic, stdlib.MetaPartition, stdlib.MetaOffset,
		stdlib.MetaKey, stdlib.MetaTimestamp, stdlib.MetaHeaders},
	Params: append(slices.Concat(connParams, registryParams),
		stdlib.Param{Name: "topic", Type: stdlib.String, Doc: "topic to read (or topics)"},
		stdlib.Param{Name: "topics", Type: stdlib.ListOf(stdlib.String), Doc: "topics to read (or topic)"},
		stdlib.Param{Name: "group", Type: stdlib.String, Doc: "consumer group: spreads partitions over tasks and processes and holds committed offsets"},
		stdlib.Param{Name: "start", Type: stdlib.ParamType{Kind: stdlib.TimeParam, OrEnum: []string{"earliest", "latest", "committed"}},
			Default: stdlib.Ident("earliest"),
			Doc:     "where a partition without a resume position or committed offset begins: earliest, latest, committed (latest when none) or an RFC 3339 time"},
		stdlib.Param{Name: "format", Type: stdlib.Enum("json", "string", "bytes", "avro", "debezium", "debezium_avro", "json_schema", "protobuf"), Default: stdlib.Ident("json"), Doc: "value format; avro: Confluent wire format through the registry, each writer schema resolved against the declared schema; debezium: a Debezium change event (JSON) read as its row with the operation in __op; debezium_avro: the same in Avro through the registry; json_schema and protobuf decode by the source's schema (read from a JSON Schema or .proto file): with registry set, in the Confluent wire format (schema id; Protobuf's message indexes), else the plain payload"},
		stdlib.Param{Name: "key_format", Type: stdlib.Enum("json", "string", "bytes", "avro", "protobuf", "json_schema"), Default: stdlib.Ident("string"), Doc: "key format; avro, protobuf and json_schema through the registry, decoded by the writer's schema"},
		stdlib.Param{Name: "isolation", Type: stdlib.Enum("read_committed", "read_uncommitted"), Default: stdlib.Ident("read_committed"),
			Doc: "read_committed skips records of aborted transactions"},
		stdlib.Param{Name: "fetch_max_bytes", Type: stdlib.Size, Default: int64(1 << 20), Doc: "largest fetch answer, shared by the partitions fetched together (larger answers cost more copying and memory than they save)"},
		stdlib.Param{Name: "max_wait", Type: stdlib.Duration, Default: 250 * time.Millisecond, Doc: "longest a fetch waits for data"},
		stdlib.Param{Name: "session_timeout", Type: stdlib.Duration, Default: 10 * time.Second, Doc: "group session timeout"},
		stdlib.Param{Name: "heartbeat_interval", Type: stdlib.Duration, Doc: "group heartbeat interval (default: a third of session_timeout, at most 3s); shorter than session_timeout"},
	),
	Output: stdlib.RawOutput,
	Check:  checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newSource(cfg)
	},
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	_, one := attrs["topic"]
	_, many := attrs["topics"]
	switch {
	case one && many:
		errs = append(errs, stdlib.AttrError{Attr: "topics", Message: "set topic or topics, not both"})
	case !one && !many:
		errs = append(errs, stdlib.AttrError{Attr: "topic", Message: "topic or topics is required"})
	}
	for _, name := range []string{"max_wait", "session_timeout", "heartbeat_interval", "fetch_max_bytes"} {
		if v, ok := attrs[name].(time.Duration); ok && v <= 0 {
			errs = append(errs, stdlib.AttrError{Attr: name, Message: name + " must be positive"})
		}
		if v, ok := attrs[name].(int64); ok && v <= 0 {
			errs = append(errs, stdlib.AttrError{Attr: name, Message: name + " must be positive"})
		}
	}
	hb, hbOK := attrs["heartbeat_interval"].(time.Duration)
	if st, ok := attrs["session_timeout"].(time.Duration); ok && hbOK && hb >= st {
		errs = append(errs, stdlib.AttrError{Attr: "heartbeat_interval", Message: fmt.Sprintf("heartbeat_interval (%v) must be shorter than session_timeout (%v)", hb, st)})
	}
	errs = append(errs, tlsconf.Check(attrs)...)
	errs = append(errs, checkRegistry(attrs)...)
	return append(errs, retry.Check(attrs)...)
}

// partKey names a partition as positions do: "topic/N".
func partKey(topic string, partition int) string { return topic + "/" + strconv.Itoa(partition) }

func parsePartKey(s string) (string, int, bool) {
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(s[i+1:])
	return s[:i], n, err == nil
}

type partState struct {
	topic     string
	partition int
	key       string // "topic/N"
	next      int64  // next offset to fetch
	leader    int    // broker id, -1 unknown
}

type source struct {
	cfg       stdlib.Config
	rotate    atomic.Uint32 // where the next fetch starts among its partitions
	log       *slog.Logger
	conn      *conn
	link      *link
	bo        *retry.Backoff // fetches
	topics    []string
	group     string
	start     string // earliest, latest, committed, or "" with startTime
	startTime time.Time
	iso       kafka.IsolationLevel
	maxBytes  int32
	maxWait   time.Duration
	val       codec.Codec
	// rows decodes format json into rows (Config.Rows), in place of val.
	rows      *stdlib.RowDecoder
	keyFormat string
	keyReg    keyDecoder // key_format through the registry
	// behind: the last fetch left records between a partition's position
	// and its end (CaughtUp); set by concurrent fetches of several leaders.
	behind atomic.Bool

	resume  stdlib.Resumer
	cg      *kafka.ConsumerGroup
	gen     *kafka.Generation
	genDone chan struct{}
	// released is closed when the source has settled what it read in
	// the generation that ended: the group rejoins only then (or after
	// settleMax), so the partitions it gives up are durable first.
	released  chan struct{}
	settleMax time.Duration
	joined    bool // a generation was positioned: the resume map is spent
	parts     map[string]*partState
	stale     bool // leaders must be looked up again
	// owed holds group offsets whose commit a lost connection prevented:
	// the next Commit commits them too.
	owed map[string]map[int]int64

	// ident is the identity of each topic read, looked up per generation.
	ident map[string]string

	// open, when set, makes the source settle transactions itself under
	// read_uncommitted: the records of a transaction wait here, by
	// producer id, until its commit marker releases them or its abort
	// marker drops them. Unlike read_committed, reading then never waits
	// for other producers' open transactions.
	open map[int64][]stdlib.Record

	// mu serialises the decoding of concurrent fetches (one per leader):
	// the codec, the partition states and the fields below are not safe
	// for concurrent use.
	mu sync.Mutex
	// lastCount is how many records the last fetch answer held: the
	// capacity the next answer's batch starts with.
	lastCount int
	// arena holds the raw values of the records decoded last; a record's
	// Raw is a slice of it (a new arena is started when one is full, the
	// old one lives on with the records that point into it).
	arena []byte

	lag partLag // per partition, the high watermark minus the next offset
}

func newSource(cfg stdlib.Config) (*source, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	s := &source{
		cfg:       cfg,
		log:       cfg.Logger,
		conn:      cn,
		group:     cfg.String("group"),
		maxBytes:  int32(min(cfg.Int("fetch_max_bytes"), 1<<30)),
		maxWait:   cfg.Duration("max_wait"),
		keyFormat: cfg.String("key_format"),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if t := cfg.String("topic"); t != "" {
		s.topics = []string{t}
	}
	s.topics = append(s.topics, cfg.Strings("topics")...)
	if len(s.topics) == 0 {
		return nil, errors.New("no topic")
	}
	switch st := cfg.Attrs["start"].(type) {
	case stdlib.Ident:
		s.start = string(st)
	case string:
		s.startTime, _ = stdlib.ParseTime(st) // checked by Spec.Values
	default:
		return nil, fmt.Errorf("start has unexpected value %v", st)
	}
	if cfg.String("isolation") != "read_uncommitted" {
		s.iso = kafka.ReadCommitted
	}
	reg, err := newRegistry(cfg)
	if err != nil {
		return nil, err
	}
	if s.keyReg, err = newKeyDecoder(cfg, reg); err != nil {
		return nil, err
	}
	if viaRegistry(cfg, cfg.String("format")) {
		s.val, err = newValueDecoder(cfg, reg)
	} else {
		s.val, err = codec.New(cfg.String("format"), cfg.Schema, codec.Options{})
	}
	if err != nil {
		return nil, err
	}
	if cfg.Rows && cfg.String("format") == "json" {
		// The untyped codec yields the message's fields, which the row
		// decoder converts to the schema as s.val's Decode would.
		c, err := codec.New("json", nil, codec.Options{})
		if err != nil {
			return nil, err
		}
		s.rows = stdlib.NewRowDecoder(c.(codec.FieldsCodec), cfg.Schema)
	}
	return s, nil
}

func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	if resume == nil {
		resume = stdlib.ResumeMap(nil)
	}
	s.resume = resume
	s.link = newLink(s.conn)
	s.bo = s.conn.backoff(s.log, "kafka source")
	var meta map[string][]kafka.Partition
	err := s.do(ctx, func(cl *kafka.Client) (err error) {
		meta, err = partitions(ctx, cl, s.topics...)
		return err
	})
	if err != nil {
		return err
	}
	if s.group == "" {
		return s.assignStatic(ctx, meta)
	}
	d := s.cfg.Duration("session_timeout")
	s.settleMax = d / 2
	hb, ok := s.cfg.Attrs["heartbeat_interval"].(time.Duration)
	if !ok {
		hb = min(d/3, 3*time.Second) // Kafka's advice: at most a third of the session
	}
	s.cg, err = kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    s.group,
		Brokers:               s.conn.brokers,
		Dialer:                s.conn.dialer(),
		Topics:                s.topics,
		StartOffset:           kafka.FirstOffset,
		SessionTimeout:        d,
		HeartbeatInterval:     hb,
		RebalanceTimeout:      d,
		JoinGroupBackoff:      joinBackoff,
		Timeout:               2*d + 5*time.Second, // a join waits up to the rebalance timeout
		WatchPartitionChanges: true,
	})
	if err != nil {
		return fmt.Errorf("group %q: %w", s.group, err)
	}
	return s.join(ctx)
}

// assignStatic spreads the partitions of every topic over the stage's tasks
// when no group is set.
func (s *source) assignStatic(ctx context.Context, meta map[string][]kafka.Partition) error {
	var all []*partState
	for _, t := range s.topics {
		ps := meta[t]
		sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
		for _, p := range ps {
			all = append(all, &partState{topic: t, partition: p.ID, key: partKey(t, p.ID), next: -1, leader: p.Leader.ID})
		}
	}
	tasks := max(s.cfg.Tasks, 1)
	s.parts = map[string]*partState{}
	for i, p := range all {
		if i%tasks == s.cfg.Task {
			s.parts[p.key] = p
		}
	}
	return s.position(ctx, nil)
}

// do runs op until it succeeds, retrying transient failures on a fresh
// transport with backoff until retry_timeout.
func (s *source) do(ctx context.Context, op func(cl *kafka.Client) error) error {
	return s.link.do(ctx, s.conn.backoff(s.log, "kafka source"), op)
}

// joinBackoff is how long the consumer group waits after a failed join
// before the next attempt.
const joinBackoff = 200 * time.Millisecond

// join waits for the next group generation and positions its partitions.
func (s *source) join(ctx context.Context) error {
	var gen *kafka.Generation
	b := s.conn.backoff(s.log, "kafka source: join group")
	waited := false
	for {
		var err error
		asked := time.Now()
		gen, err = s.cg.Next(ctx)
		if err == nil {
			b.Reset()
			break
		}
		if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
			return fmt.Errorf("join group %q: %w", s.group, err)
		}
		if transient(err) {
			// The brokers are away. The group makes its next attempt
			// joinBackoff after Next took its last error: pace them. An
			// error that comes at once after a wait is from the attempt
			// made before it: ask again.
			if waited && time.Since(asked) < joinBackoff/2 {
				waited = false
				continue
			}
			if werr := b.Wait(ctx, err); werr != nil {
				return fmt.Errorf("join group %q: %w", s.group, werr)
			}
			waited = true
			continue
		}
		// The group retries by itself (a member that died is still being
		// waited for, the coordinator moved): report and wait for it.
		s.log.Warn("kafka group join failed; retrying", "group", s.group, "err", err)
	}
	done, released, wait := make(chan struct{}), make(chan struct{}), s.settleMax
	gen.Start(func(gctx context.Context) {
		<-gctx.Done()
		close(done)
		// The group rejoins when this returns: not before what was read
		// in this generation is durable and committed (Read settles),
		// unless that takes longer than the group waits for a member.
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-released:
		case <-t.C:
		}
	})
	s.gen, s.genDone, s.released = gen, done, released
	s.parts = map[string]*partState{}
	s.lag.reset()
	committed := map[string]int64{}
	for t, pas := range gen.Assignments {
		for _, pa := range pas {
			k := partKey(t, pa.ID)
			s.parts[k] = &partState{topic: t, partition: pa.ID, key: k, next: -1, leader: -1}
			if pa.Offset >= 0 {
				committed[k] = pa.Offset
			}
			// Offsets a lost connection kept from being committed are
			// durable all the same.
			if off, ok := s.owed[t][pa.ID]; ok && (pa.Offset < 0 || off > pa.Offset) {
				committed[k] = off
			}
		}
	}
	s.stale = true
	s.log.Debug("kafka group generation", "group", s.group, "generation", gen.ID, "partitions", len(s.parts))
	return s.position(ctx, committed)
}

// identity is the identity of a partition's offsets (stdlib.Position):
// that of its topic, looked up by lookupIdentities.
func (s *source) identity(k string) string {
	t, _, _ := parsePartKey(k)
	return s.ident[t]
}

// lookupIdentities looks up the identity of every topic read: the cluster
// and topic id, so that a stored position is never applied to a topic of
// the same name on another cluster, or created again.
func (s *source) lookupIdentities(ctx context.Context) error {
	ids, err := s.conn.identities(ctx, s.log, "kafka source", s.topics)
	if err != nil {
		return err
	}
	s.ident = ids
	return nil
}

// position sets the next offset of every partition: after its resume
// position (the first generation only: the state store's is this
// process's, and the partition may have moved on since), else at its
// committed offset, lowered to what the exactly-once sinks hold for it
// when the group hands it over; else as start says (after what those
// sinks hold, unless start is earliest).
func (s *source) position(ctx context.Context, committed map[string]int64) error {
	first := !s.joined
	s.joined = true
	if len(s.parts) > 0 {
		if err := s.lookupIdentities(ctx); err != nil {
			return err
		}
	}
	// Acquire comes first: what the sinks that fence hold has the last
	// word. Every partition is then resumed (which confirms its identity
	// to the other sinks); only the first generation uses the result, and
	// a partition started afresh for a sink's sake ignores its committed
	// offset.
	var acquired map[string]int64
	h, handover := s.resume.(stdlib.Handover)
	if handover && s.cg != nil && len(s.parts) > 0 {
		ids := make(map[string]string, len(s.parts))
		for k := range s.parts {
			ids[k] = s.identity(k)
		}
		var err error
		if acquired, err = h.Acquire(ctx, ids); err != nil {
			return err
		}
	}
	resumed := map[string]int64{}
	for k := range s.parts {
		if off, ok := s.resume.Resume(k, s.identity(k)); ok && first {
			resumed[k] = off
		}
	}
	req := map[string][]kafka.OffsetRequest{}
	for k, p := range s.parts {
		last, have := int64(0), false
		if off, ok := resumed[k]; ok {
			last, have = off, true
		} else if c, ok := committed[k]; ok && !(handover && h.Fresh(k)) {
			last, have = c-1, true
		}
		if off, ok := acquired[k]; ok && (!have && s.start != "earliest" || have && off < last) {
			// With nothing committed, only earliest re-reads what an
			// exactly-once sink already holds (for other sinks' sake);
			// latest or a time would skip what was read after it.
			last, have = off, true
		}
		if have {
			p.next = last + 1
			s.log.Debug("kafka partition positioned", "partition", k, "next", p.next)
			continue
		}
		var r kafka.OffsetRequest
		switch {
		case !s.startTime.IsZero():
			r = kafka.TimeOffsetOf(p.partition, s.startTime)
		case s.start == "earliest":
			r = kafka.FirstOffsetOf(p.partition)
		default: // latest, committed with nothing committed
			r = kafka.LastOffsetOf(p.partition)
		}
		req[p.topic] = append(req[p.topic], r)
	}
	if len(req) == 0 {
		return nil
	}
	res, err := s.listOffsets(ctx, req)
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	late := map[string][]kafka.OffsetRequest{} // time start past the last record
	for t, pos := range res.Topics {
		for _, po := range pos {
			p := s.parts[partKey(t, po.Partition)]
			if p == nil {
				continue
			}
			if po.Error != nil {
				return fmt.Errorf("list offsets of %s: %w", p.key, po.Error)
			}
			switch {
			case !s.startTime.IsZero():
				p.next = -1
				for off := range po.Offsets {
					if off >= 0 && (p.next < 0 || off < p.next) {
						p.next = off
					}
				}
				if p.next < 0 {
					late[t] = append(late[t], kafka.LastOffsetOf(p.partition))
				}
			case s.start == "earliest":
				p.next = po.FirstOffset
			default:
				p.next = po.LastOffset
			}
		}
	}
	if len(late) > 0 {
		res, err := s.listOffsets(ctx, late)
		if err != nil {
			return fmt.Errorf("list offsets: %w", err)
		}
		for t, pos := range res.Topics {
			for _, po := range pos {
				if p := s.parts[partKey(t, po.Partition)]; p != nil && po.Error == nil {
					p.next = po.LastOffset
				}
			}
		}
	}
	for _, p := range s.parts {
		if p.next < 0 {
			return fmt.Errorf("no offset found for %s", p.key)
		}
	}
	return nil
}

// listOffsets looks offsets up, retrying on a lost connection.
func (s *source) listOffsets(ctx context.Context, req map[string][]kafka.OffsetRequest) (res *kafka.ListOffsetsResponse, err error) {
	err = s.do(ctx, func(cl *kafka.Client) error {
		res, err = cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req, IsolationLevel: s.iso})
		return err
	})
	return res, err
}

// refreshLeaders looks up the leader of every owned partition.
func (s *source) refreshLeaders(ctx context.Context) error {
	var meta map[string][]kafka.Partition
	err := s.do(ctx, func(cl *kafka.Client) (err error) {
		meta, err = partitions(ctx, cl, s.topics...)
		return err
	})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for t, ps := range meta {
		for _, mp := range ps {
			if p := s.parts[partKey(t, mp.ID)]; p != nil {
				p.leader = mp.Leader.ID
			}
		}
	}
	s.stale = false
	return nil
}

// CaughtUp implements [stdlib.CaughtUpper]: the last fetch read every
// partition to its end (its last stable offset under read_committed).
func (s *source) CaughtUp() bool { return !s.behind.Load() }

func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.cg != nil {
			select {
			case <-s.genDone:
				// Hand the partitions over: make what was read durable
				// and commit it under the ending generation, then rejoin.
				if h, ok := s.resume.(stdlib.Handover); ok {
					if err := h.Settle(ctx); err != nil {
						return nil, fmt.Errorf("settling before rebalance: %w", err)
					}
				}
				s.release()
				if err := s.join(ctx); err != nil {
					return nil, err
				}
			default:
			}
		}
		if s.stale {
			if err := s.refreshLeaders(ctx); err != nil {
				return nil, err
			}
		}
		if len(s.parts) == 0 {
			// Nothing assigned: wait for a rebalance.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.genDone:
			case <-time.After(s.maxWait):
			}
			continue
		}
		// An empty answer returns too (after max_wait), so that the
		// caller gets to commit between reads of an idle source.
		cl := s.link.client()
		s.behind.Store(false)
		recs, err := s.fetch(ctx, cl)
		if err != nil {
			s.behind.Store(true)
		}
		switch {
		case err == nil:
			s.bo.Reset()
			return recs, nil
		case ctx.Err() != nil || !transient(err):
			return recs, err
		}
		// The connection broke or the broker is away: positions stay
		// where the records handed on end, so the next fetch, on a fresh
		// transport, continues there.
		s.link.renew(cl)
		s.stale = true
		if len(recs) > 0 {
			return recs, nil // other leaders answered
		}
		if werr := s.bo.Wait(ctx, err); werr != nil {
			return nil, werr
		}
	}
}

// fetch sends one fetch per leader broker and decodes the answers.
func (s *source) fetch(ctx context.Context, cl *kafka.Client) ([]stdlib.Record, error) {
	byLeader := map[int][]*partState{}
	for _, p := range s.parts {
		byLeader[p.leader] = append(byLeader[p.leader], p)
	}
	if len(byLeader) == 1 {
		for _, ps := range byLeader {
			return s.fetchFrom(ctx, cl, ps)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		out  []stdlib.Record
		errs []error
	)
	for _, ps := range byLeader {
		wg.Go(func() {
			recs, err := s.fetchFrom(ctx, cl, ps)
			mu.Lock()
			defer mu.Unlock()
			out = append(out, recs...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *source) fetchFrom(ctx context.Context, cl *kafka.Client, ps []*partState) ([]stdlib.Record, error) {
	wait := s.maxWait
	if dl, ok := ctx.Deadline(); ok {
		// Keep the broker's wait inside the caller's deadline, so that the
		// connection's deadline does not fire first.
		left := time.Until(dl) - 50*time.Millisecond
		if left <= 0 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		wait = min(wait, left)
	}
	// fetch_max_bytes is shared by the partitions of a fetch, each asking
	// for its part: larger answers cost more copying and memory than they
	// save. The overall limit leaves room for every part and then some:
	// an answer cut short by its overall limit in the middle of a
	// partition comes without that partition's aborted transactions from
	// the development broker, and read_committed would then return
	// aborted records. That broker also counts against the overall limit
	// the batch it leaves out of each full partition (up to a message's
	// largest size, 1 MiB by default).
	// A broker returns a batch larger than a partition's part only when
	// it comes first in the answer: the partitions take turns at being
	// first, so that none waits behind others that always have data.
	part := max(s.maxBytes/int32(len(ps)), minPartitionBytes)
	total := min(int64(len(ps))*(int64(part)+maxBatch), math.MaxInt32)
	req := &fetchAPI.Request{
		ReplicaID:      -1,
		MaxWaitTime:    int32(wait / time.Millisecond),
		MinBytes:       1,
		MaxBytes:       int32(total),
		IsolationLevel: int8(s.iso),
		SessionID:      -1,
		SessionEpoch:   -1,
	}
	idx := map[string]int{}
	byKey := map[string]*partState{}
	first := int(s.rotate.Add(1)) % len(ps)
	for k := range ps {
		p := ps[(first+k)%len(ps)]
		i, ok := idx[p.topic]
		if !ok {
			i = len(req.Topics)
			idx[p.topic] = i
			req.Topics = append(req.Topics, fetchAPI.RequestTopic{Topic: p.topic})
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, fetchAPI.RequestPartition{
			Partition:          int32(p.partition),
			CurrentLeaderEpoch: -1,
			FetchOffset:        p.next,
			LogStartOffset:     -1,
			PartitionMaxBytes:  part,
		})
		byKey[p.key] = p
	}
	m, err := cl.Transport.RoundTrip(ctx, cl.Addr, req)
	if err != nil {
		if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
			// The caller's deadline reached the connection first.
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var fe *fetchAPI.Error
		if errors.As(err, &fe) {
			s.mu.Lock()
			s.stale = true // leaders moved
			s.mu.Unlock()
			return nil, nil
		}
		return nil, fmt.Errorf("fetch: %w", err)
	}
	res, ok := m.(*fetchAPI.Response)
	if !ok {
		return nil, fmt.Errorf("fetch: unexpected response %T", m)
	}
	if res.ErrorCode != 0 {
		return nil, fmt.Errorf("fetch: %w", kafka.Error(res.ErrorCode))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Size the batch once: at most the records between each partition's
	// position and its high watermark, about as many as last time.
	remaining := int64(0)
	for ti := range res.Topics {
		rt := &res.Topics[ti]
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			if p := byKey[partKey(rt.Topic, int(rp.Partition))]; p != nil && rp.HighWatermark > p.next {
				remaining += rp.HighWatermark - p.next
			}
		}
	}
	var out []stdlib.Record
	if remaining > 0 {
		out = make([]stdlib.Record, 0, min(remaining, int64(max(s.lastCount+s.lastCount/4, 256))))
	}
	defer func() { s.lastCount = len(out) }()
	for ti := range res.Topics {
		rt := &res.Topics[ti]
		for pi := range rt.Partitions {
			rp := &rt.Partitions[pi]
			p := byKey[partKey(rt.Topic, int(rp.Partition))]
			if p == nil {
				continue
			}
			if rp.ErrorCode != 0 {
				s.behind.Store(true)
				if err := s.partitionError(ctx, p, kafka.Error(rp.ErrorCode)); err != nil {
					return nil, err
				}
				continue
			}
			out, err = s.decode(out, p, rp)
			if err != nil {
				return nil, err
			}
			s.lag.note(p.key, rp.HighWatermark-p.next)
			end := rp.HighWatermark
			if s.iso == kafka.ReadCommitted && rp.LastStableOffset >= 0 {
				end = min(end, rp.LastStableOffset) // what read_committed can read
			}
			if end > p.next {
				s.behind.Store(true)
			}
		}
	}
	return out, nil
}

func (s *source) partitionError(ctx context.Context, p *partState, err kafka.Error) error {
	switch err {
	case kafka.OffsetOutOfRange:
		// The log was truncated under us: continue as start says.
		r := kafka.FirstOffsetOf(p.partition)
		if s.start == "latest" {
			r = kafka.LastOffsetOf(p.partition)
		}
		res, lerr := s.listOffsets(ctx, map[string][]kafka.OffsetRequest{p.topic: {r}})
		if lerr != nil {
			return fmt.Errorf("list offsets of %s: %w", p.key, lerr)
		}
		for _, po := range res.Topics[p.topic] {
			if po.Partition == p.partition && po.Error == nil {
				old := p.next
				if s.start == "latest" {
					p.next = po.LastOffset
				} else {
					p.next = po.FirstOffset
				}
				s.log.Warn("kafka offset out of range", "partition", p.key, "offset", old, "now", p.next)
			}
		}
		return nil
	case kafka.NotLeaderForPartition, kafka.LeaderNotAvailable, kafka.UnknownTopicOrPartition, kafka.FencedLeaderEpoch, kafka.UnknownLeaderEpoch:
		s.stale = true
		return nil
	}
	if err.Temporary() {
		return nil
	}
	return fmt.Errorf("fetch %s: %w", p.key, err)
}

// decode appends the records of one fetched partition to out, dropping
// control markers and, under read_committed, aborted transactions.
func (s *source) decode(out []stdlib.Record, p *partState, rp *fetchAPI.ResponsePartition) ([]stdlib.Record, error) {
	if rp.RecordSet.Records == nil {
		return out, nil
	}
	var batches []protocol.RecordReader
	if st, ok := rp.RecordSet.Records.(*protocol.RecordStream); ok {
		batches = st.Records
	} else {
		batches = []protocol.RecordReader{rp.RecordSet.Records}
	}
	aborted := slices.Clone(rp.AbortedTransactions)
	sort.Slice(aborted, func(i, j int) bool { return aborted[i].FirstOffset < aborted[j].FirstOffset })
	abortedPIDs := map[int64]bool{}
	for _, b := range batches {
		switch b := b.(type) {
		case *protocol.ControlBatch:
			commit, err := s.skipControl(p, b, abortedPIDs)
			if err != nil {
				return out, err
			}
			if s.open != nil {
				if commit {
					out = append(out, s.open[b.ProducerID]...)
				}
				delete(s.open, b.ProducerID)
			}
			continue
		case *protocol.RecordBatch:
			if s.open != nil && b.Attributes.Transactional() {
				var err error
				if s.open[b.ProducerID], err = s.decodeBatch(s.open[b.ProducerID], p, b); err != nil {
					return out, err
				}
				continue
			}
			if s.iso == kafka.ReadCommitted && b.Attributes.Transactional() {
				for len(aborted) > 0 && aborted[0].FirstOffset <= b.BaseOffset {
					abortedPIDs[aborted[0].ProducerID] = true
					aborted = aborted[1:]
				}
				if abortedPIDs[b.ProducerID] {
					if err := s.skipBatch(p, b); err != nil {
						return out, err
					}
					continue
				}
			}
		}
		var err error
		out, err = s.decodeBatch(out, p, b)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// skipControl reads past a control batch and reports whether it held a
// commit marker.
func (s *source) skipControl(p *partState, b *protocol.ControlBatch, abortedPIDs map[int64]bool) (commit bool, err error) {
	for {
		r, err := b.ReadRecord()
		if errors.Is(err, io.EOF) {
			return commit, nil
		}
		if err != nil {
			return false, fmt.Errorf("read control batch of %s: %w", p.key, err)
		}
		if r.Offset >= p.next {
			p.next = r.Offset + 1
		}
		cr, err := protocol.ReadControlRecord(r)
		switch {
		case err != nil:
		case cr.Type == 0: // abort marker
			delete(abortedPIDs, b.ProducerID)
		case cr.Type == 1:
			commit = true
		}
	}
}

func (s *source) skipBatch(p *partState, b protocol.RecordReader) error {
	for {
		r, err := b.ReadRecord()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read batch of %s: %w", p.key, err)
		}
		closeRecord(r)
		if r.Offset >= p.next {
			p.next = r.Offset + 1
		}
	}
}

func closeRecord(r *protocol.Record) {
	if r.Key != nil {
		r.Key.Close()
	}
	if r.Value != nil {
		r.Value.Close()
	}
}

func (s *source) decodeBatch(out []stdlib.Record, p *partState, b protocol.RecordReader) ([]stdlib.Record, error) {
	for {
		r, err := b.ReadRecord()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read batch of %s: %w", p.key, err)
		}
		if r.Offset < p.next {
			closeRecord(r)
			continue
		}
		rec, err := s.record(p, r)
		closeRecord(r)
		if err != nil {
			return out, err
		}
		p.next = r.Offset + 1
		out = append(out, rec)
	}
}

// minPartitionBytes is the least a partition asks for in a fetch.
const minPartitionBytes = 1 << 10

// maxBatch is the size of the largest record batch a broker accepts by
// default (message.max.bytes).
const maxBatch = 1 << 20

// arenaSize is the size of the buffers that raw values are copied into:
// one allocation for many records instead of one for each.
const arenaSize = 256 << 10

// readValue copies a record's value into the arena.
func (s *source) readValue(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	n := b.Len()
	if n > arenaSize/4 {
		return protocol.ReadAll(b)
	}
	if cap(s.arena)-len(s.arena) < n {
		s.arena = make([]byte, 0, arenaSize)
	}
	start := len(s.arena)
	s.arena = s.arena[:start+n]
	val := s.arena[start : start+n : start+n]
	_, err := io.ReadFull(b, val)
	return val, err
}

func (s *source) record(p *partState, r *protocol.Record) (stdlib.Record, error) {
	val, err := s.readValue(r.Value)
	if err != nil {
		return stdlib.Record{}, fmt.Errorf("read %s@%d: %w", p.key, r.Offset, err)
	}
	kb, err := protocol.ReadAll(r.Key)
	if err != nil {
		return stdlib.Record{}, fmt.Errorf("read %s@%d: %w", p.key, r.Offset, err)
	}
	// A message that does not decode goes on with Err set: the stage's
	// error policy decides (fail, skip, dead letter).
	var derr error
	var v any
	if s.rows != nil {
		// val is the record's own copy (readValue), never written again,
		// so the row's strings may alias it.
		v, err = s.rows.Decode(val)
	} else {
		v, err = s.val.Decode(val)
	}
	if err != nil {
		derr = fmt.Errorf("decode value of %s@%d: %w", p.key, r.Offset, err)
	}
	var key any
	if s.keyReg != nil && kb != nil {
		key, err = s.keyReg.value(kb)
	} else {
		key, err = decodeKey(s.keyFormat, kb)
	}
	if err != nil {
		key = kb
		derr = errors.Join(derr, fmt.Errorf("decode key of %s@%d: %w", p.key, r.Offset, err))
	}
	var hs []stdlib.Header
	if len(r.Headers) > 0 {
		hs = make([]stdlib.Header, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = stdlib.Header{Key: h.Key, Value: h.Value}
		}
	}
	return stdlib.Record{
		Key:       key,
		Value:     v,
		Headers:   hs,
		Time:      r.Time,
		Topic:     p.topic,
		Partition: int32(p.partition),
		Pos:       stdlib.Position{Source: s.cfg.Stage, Partition: p.key, Offset: r.Offset},
		Raw:       val,
		Err:       derr,
	}, nil
}

// Commit commits group offsets just after positions, for the partitions
// this task owns now.
func (s *source) Commit(ctx context.Context, positions []stdlib.Position) error {
	if s.gen == nil {
		return nil
	}
	offs := map[string]map[int]int64{}
	for t, ps := range s.owed {
		for n, off := range ps {
			if s.parts[partKey(t, n)] != nil {
				if offs[t] == nil {
					offs[t] = map[int]int64{}
				}
				offs[t][n] = off
			}
		}
	}
	for _, pos := range positions {
		if pos.Source != "" && pos.Source != s.cfg.Stage {
			continue
		}
		t, n, ok := parsePartKey(pos.Partition)
		if !ok || s.parts[pos.Partition] == nil {
			continue
		}
		if offs[t] == nil {
			offs[t] = map[int]int64{}
		}
		if pos.Offset+1 > offs[t][n] {
			offs[t][n] = pos.Offset + 1
		}
	}
	if len(offs) == 0 {
		return nil
	}
	err := s.gen.CommitOffsets(offs)
	s.owed = nil
	switch {
	case err == nil:
		return nil
	case transient(err):
		// What the sinks made durable stays durable: commit it with the
		// next checkpoint (the generation may end first; the partitions
		// then resume from the sinks' positions or the last commit).
		s.owed = offs
		s.log.Warn("kafka group offsets not committed: connection lost; committing them with the next checkpoint",
			"group", s.group, "err", err)
		return nil
	case errors.Is(err, kafka.RebalanceInProgress), errors.Is(err, kafka.IllegalGeneration), errors.Is(err, kafka.UnknownMemberId):
		// The partitions moved on; their new owner continues from the last
		// commit and the executor's replay rules cover the gap.
		s.log.Warn("kafka group offsets not committed: group is rebalancing", "group", s.group, "err", err)
		return nil
	}
	return fmt.Errorf("commit group %q offsets: %w", s.group, err)
}

// release lets the group rejoin after a generation ended.
func (s *source) release() {
	if s.released != nil {
		close(s.released)
		s.released = nil
	}
}

func (s *source) Close(ctx context.Context) error {
	s.release()
	var err error
	if s.cg != nil {
		err = s.cg.Close()
		s.cg = nil
	}
	if s.link != nil {
		s.link.close()
	}
	if err != nil {
		return fmt.Errorf("close group: %w", err)
	}
	return nil
}
