package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/kafka/txn"
)

// offsetsPartitions is the partition count __pipe_offsets is created with.
const offsetsPartitions = 16

// eosState is the exactly-once half of the sink: Kafka transactions, one
// per checkpoint interval and writer. The task's own writer takes the
// records of every partition not acquired; each acquired source partition
// (a consumer-group partition this process took over, see [sink.Acquire])
// has a writer of its own, whose transactional id is the partition's, so
// that a process taking a partition over fences whoever wrote for it last.
type eosState struct {
	parts   map[string][]int // partition ids per topic
	offsets []int            // partition ids of __pipe_offsets
	main    *txnWriter

	mu    sync.Mutex // guards units: Acquire runs on a source's goroutine
	units map[unitKey]*txnWriter
}

type unitKey struct{ source, partition string }

// txnWriter is one transactional producer with what its open transaction
// holds.
type txnWriter struct {
	txid    string
	unit    *unitKey // nil for the task's own writer
	p       *txn.Producer
	offPart int // its partition of __pipe_offsets
	buf     map[topicPart]*partBuf
	stored  map[string]int64 // position key -> offset already stored
	dirty   bool             // the open transaction holds records
}

type topicPart struct {
	topic     string
	partition int
}

type partBuf struct {
	recs  []protocol.Record
	bytes int64
}

// TransactionalID returns the transactional.id of one task of a sink stage:
// a second instance of the same task fences the first.
func TransactionalID(pipeline, stage string, task int) string {
	return "pipe/" + pipeline + "/" + stage + "/" + strconv.Itoa(task)
}

// unitTxID is the transactional.id of a task's writer for one acquired
// source partition.
func unitTxID(task, source, partition string) string {
	return task + "/" + source + "/" + partition
}

// heldKey is the __pipe_offsets key of one source partition's position.
func heldKey(txid string, p stdlib.Position) string {
	return txid + "|" + p.Source + "|" + p.Partition
}

func (s *sink) openEOS(ctx context.Context) ([]stdlib.Position, error) {
	e := &eosState{parts: map[string][]int{}, units: map[unitKey]*txnWriter{}}
	err := createTopic(ctx, s.cl, OffsetsTopic, offsetsPartitions, -1, []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: "compact"},
	})
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	if e.offsets, err = e.partitions(ctx, s.cl, OffsetsTopic); err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	s.eos = e
	// Fence older instances and abort their open transaction first, so that
	// the positions read next are final.
	e.main, err = s.newWriter(ctx, TransactionalID(s.cfg.Pipeline, s.cfg.Stage, s.cfg.Task), nil)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	prefix := e.main.txid + "|"
	held, err := s.readHeld(ctx, e.main.offPart, func(k string) bool { return strings.HasPrefix(k, prefix) })
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: read %s: %w", s.cfg.Stage, OffsetsTopic, err)
	}
	out := make([]stdlib.Position, 0, len(held))
	for k, p := range held {
		e.main.stored[k] = p.Offset
		out = append(out, p)
	}
	return out, nil
}

// newWriter initialises a transactional producer for txid, fencing every
// older one.
func (s *sink) newWriter(ctx context.Context, txid string, unit *unitKey) (*txnWriter, error) {
	h := fnv.New32a()
	h.Write([]byte(txid))
	offs := s.eos.offsets
	w := &txnWriter{
		txid: txid, unit: unit,
		offPart: offs[int(h.Sum32()%uint32(len(offs)))],
		buf:     map[topicPart]*partBuf{},
		stored:  map[string]int64{},
	}
	var err error
	w.p, err = txn.New(ctx, txn.Config{
		Client:          s.cl,
		TransactionalID: txid,
		Timeout:         s.cfg.Duration("transaction_timeout"),
		Compression:     s.compression,
	})
	return w, err
}

// Acquire implements stdlib.Acquirer: for each partition of source it
// starts a writer of its own, which fences the writer of any other
// process still holding the partition (its open transaction is aborted),
// and returns the positions committed for the partitions.
func (s *sink) Acquire(ctx context.Context, source string, partitions []string) ([]stdlib.Position, error) {
	e := s.eos
	if e == nil || len(partitions) == 0 {
		return nil, nil
	}
	ws := make([]*txnWriter, len(partitions))
	errs := make([]error, len(partitions))
	var wg sync.WaitGroup
	for i, p := range partitions {
		wg.Go(func() {
			u := &unitKey{source, p}
			ws[i], errs[i] = s.newWriter(ctx, unitTxID(e.main.txid, source, p), u)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	// Every earlier writer is fenced now: the positions read are final.
	byPart := map[int]map[string]bool{}
	for _, w := range ws {
		if byPart[w.offPart] == nil {
			byPart[w.offPart] = map[string]bool{}
		}
		byPart[w.offPart][heldKey(w.txid, stdlib.Position{Source: source, Partition: w.unit.partition})] = true
	}
	held := map[string]stdlib.Position{}
	for part, keys := range byPart {
		h, err := s.readHeld(ctx, part, func(k string) bool { return keys[k] })
		if err != nil {
			return nil, fmt.Errorf("kafka sink %q: read %s: %w", s.cfg.Stage, OffsetsTopic, err)
		}
		maps.Copy(held, h)
	}
	var out []stdlib.Position
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range ws {
		k := heldKey(w.txid, stdlib.Position{Source: source, Partition: w.unit.partition})
		if p, ok := held[k]; ok {
			w.stored[k] = p.Offset
			out = append(out, p)
			s.log.Debug("kafka sink acquired partition", "stage", s.cfg.Stage, "source", source, "partition", w.unit.partition, "held", p.Offset)
		} else {
			s.log.Debug("kafka sink acquired partition", "stage", s.cfg.Stage, "source", source, "partition", w.unit.partition)
		}
		e.units[*w.unit] = w
	}
	return out, nil
}

// partitions returns the partition ids of topic, cached.
func (e *eosState) partitions(ctx context.Context, cl *kafka.Client, topic string) ([]int, error) {
	if ps, ok := e.parts[topic]; ok {
		return ps, nil
	}
	meta, err := partitions(ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, p := range meta[topic] {
		ids = append(ids, p.ID)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("topic %q has no partitions", topic)
	}
	e.parts[topic] = ids
	return ids, nil
}

// readHeld reads the committed positions whose keys want accepts from
// partition part of __pipe_offsets, up to the end of the log as it was at
// the call. The writers of those keys are fenced by then, so their
// transactions are settled; other writers' transactions may still be
// open, and are skipped rather than waited for (read_uncommitted, with
// transactions settled by their markers).
func (s *sink) readHeld(ctx context.Context, part int, want func(string) bool) (map[string]stdlib.Position, error) {
	res, err := s.cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		OffsetsTopic: {kafka.FirstOffsetOf(part), kafka.LastOffsetOf(part)},
	}})
	if err != nil {
		return nil, err
	}
	var first, end int64 = -1, -1
	for _, po := range res.Topics[OffsetsTopic] {
		if po.Partition != part {
			continue
		}
		if po.Error != nil {
			return nil, po.Error
		}
		first, end = po.FirstOffset, po.LastOffset
	}
	if first < 0 || end < 0 {
		return nil, fmt.Errorf("no offsets for partition %d", part)
	}
	raw, _ := codec.New("bytes", nil, codec.Options{})
	rd := &source{
		cfg:       stdlib.Config{Stage: s.cfg.Stage},
		log:       s.log,
		tr:        s.tr,
		cl:        s.cl,
		topics:    []string{OffsetsTopic},
		iso:       kafka.ReadUncommitted,
		open:      map[int64][]stdlib.Record{},
		maxBytes:  8 << 20,
		maxWait:   100 * time.Millisecond,
		val:       raw,
		keyFormat: "string",
		stale:     true,
	}
	p := &partState{topic: OffsetsTopic, partition: part, key: partKey(OffsetsTopic, part), next: first, leader: -1}
	rd.parts = map[string]*partState{p.key: p}
	held := map[string]stdlib.Position{}
	for p.next < end {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if rd.stale {
			if err := rd.refreshLeaders(ctx); err != nil {
				return nil, err
			}
		}
		recs, err := rd.fetch(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			k, _ := r.Key.(string)
			if !want(k) {
				continue
			}
			var pos stdlib.Position
			if err := json.Unmarshal(r.Raw, &pos); err != nil {
				return nil, fmt.Errorf("position record %q at %d: %w", k, r.Pos.Offset, err)
			}
			held[k] = pos
		}
	}
	return held, nil
}

// writeEOS buffers msgs (converted from batch[from[i]]) per writer and
// partition and produces the batches that filled up.
func (s *sink) writeEOS(ctx context.Context, batch []stdlib.Record, msgs []kafka.Message, from []int) error {
	e := s.eos
	ids := make([][]int, len(msgs))
	for i := range msgs {
		var err error
		if ids[i], err = e.partitions(ctx, s.cl, msgs[i].Topic); err != nil {
			return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
		}
	}
	limit := min(s.batchBytes, maxBatchBytes)
	ready := map[*txnWriter]map[topicPart][][]protocol.Record{}
	e.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		w := e.main
		if len(e.units) > 0 {
			pos := &batch[from[i]].Pos
			if u := e.units[unitKey{pos.Source, pos.Partition}]; u != nil {
				w = u
			}
		}
		key := topicPart{m.Topic, s.balancer.Balance(*m, ids[i]...)}
		b := w.buf[key]
		if b == nil {
			b = &partBuf{}
			w.buf[key] = b
		}
		r := protocol.Record{Time: m.Time, Key: protocol.NewBytes(m.Key), Value: protocol.NewBytes(m.Value)}
		size := int64(len(m.Key) + len(m.Value) + 24)
		if len(m.Headers) > 0 {
			r.Headers = make([]protocol.Header, len(m.Headers))
			for j, h := range m.Headers {
				r.Headers[j] = protocol.Header{Key: h.Key, Value: h.Value}
				size += int64(len(h.Key) + len(h.Value) + 8)
			}
		}
		if b.bytes+size > limit && len(b.recs) > 0 {
			if ready[w] == nil {
				ready[w] = map[topicPart][][]protocol.Record{}
			}
			ready[w][key] = append(ready[w][key], b.recs)
			b.recs, b.bytes = nil, 0
		}
		b.recs = append(b.recs, r)
		b.bytes += size
	}
	e.mu.Unlock()
	return s.produce(ctx, ready)
}

// maxBatchBytes keeps a batch under the brokers' default message.max.bytes.
const maxBatchBytes = 1000000

// writers returns the task's writer and those of the partitions it
// holds now.
func (e *eosState) writers() []*txnWriter {
	e.mu.Lock()
	defer e.mu.Unlock()
	ws := make([]*txnWriter, 0, 1+len(e.units))
	ws = append(ws, e.main)
	for _, w := range e.units {
		ws = append(ws, w)
	}
	return ws
}

// produce sends the batches of each writer and partition in order,
// partitions concurrently.
func (s *sink) produce(ctx context.Context, ready map[*txnWriter]map[topicPart][][]protocol.Record) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w, parts := range ready {
		for k, batches := range parts {
			w.dirty = true
			wg.Go(func() {
				for _, recs := range batches {
					if err := w.p.Produce(ctx, k.topic, k.partition, recs); err != nil {
						err = s.writerErr(w, err)
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	return nil
}

// writerErr qualifies a writer's error. A writer fenced because this
// process acquired its partition again is no error: its transaction is
// gone and the partition is replayed from what was committed. A writer
// fenced by another process means that process took the partition over
// while this one still wrote for it: this one must stop.
func (s *sink) writerErr(w *txnWriter, err error) error {
	if !errors.Is(err, txn.ErrFenced) {
		return err
	}
	if w.unit == nil {
		return fmt.Errorf("another process runs task %d of this sink: %w", s.cfg.Task, err)
	}
	e := s.eos
	e.mu.Lock()
	current := e.units[*w.unit] == w
	e.mu.Unlock()
	if !current {
		return nil
	}
	return fmt.Errorf("partition %s of %q was taken over by another process: %w", w.unit.partition, w.unit.source, err)
}

// flush produces every buffered record into the open transactions.
func (s *sink) flush(ctx context.Context) error {
	ready := map[*txnWriter]map[topicPart][][]protocol.Record{}
	for _, w := range s.eos.writers() {
		for k, b := range w.buf {
			if len(b.recs) > 0 {
				if ready[w] == nil {
					ready[w] = map[topicPart][][]protocol.Record{}
				}
				ready[w][k] = append(ready[w][k], b.recs)
				b.recs, b.bytes = nil, 0
			}
		}
	}
	return s.produce(ctx, ready)
}

func (s *sink) checkpointEOS(ctx context.Context, cp stdlib.Checkpoint) error {
	e := s.eos
	if err := s.flush(ctx); err != nil {
		return err
	}
	// Each writer stores its positions: a unit its own partition's, the
	// task's writer every other.
	ws := e.writers()
	owner := map[unitKey]*txnWriter{}
	for _, w := range ws[1:] {
		owner[*w.unit] = w
	}
	pos := map[*txnWriter][]stdlib.Position{}
	for _, p := range cp.Positions {
		w := owner[unitKey{p.Source, p.Partition}]
		if w == nil {
			w = e.main
		}
		pos[w] = append(pos[w], p)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, w := range ws {
		wg.Go(func() {
			if err := s.commitWriter(ctx, w, pos[w]); err != nil {
				if err = s.writerErr(w, err); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafka sink %q: checkpoint %d: %w", s.cfg.Stage, cp.ID, err)
	}
	return nil
}

// commitWriter stores the positions that changed in w's transaction and
// commits it, if it holds anything.
func (s *sink) commitWriter(ctx context.Context, w *txnWriter, positions []stdlib.Position) error {
	var recs []protocol.Record
	changed := map[string]int64{}
	for _, pos := range positions {
		k := heldKey(w.txid, pos)
		if old, ok := w.stored[k]; ok && old == pos.Offset {
			continue
		}
		v, err := json.Marshal(pos)
		if err != nil {
			return fmt.Errorf("encode position: %w", err)
		}
		recs = append(recs, protocol.Record{Key: protocol.NewBytes([]byte(k)), Value: protocol.NewBytes(v)})
		changed[k] = pos.Offset
	}
	if len(recs) > 0 {
		if err := w.p.Produce(ctx, OffsetsTopic, w.offPart, recs); err != nil {
			return fmt.Errorf("store positions: %w", err)
		}
		w.dirty = true
	}
	if !w.dirty {
		return nil
	}
	if err := w.p.Commit(ctx); err != nil {
		return err
	}
	w.dirty = false
	maps.Copy(w.stored, changed)
	s.log.Debug("kafka sink committed", "stage", s.cfg.Stage, "txid", w.txid, "positions", changed)
	return nil
}

func (s *sink) closeEOS(ctx context.Context) error {
	var errs []error
	for _, w := range s.eos.writers() {
		clear(w.buf)
		if !w.dirty {
			continue
		}
		// Unflushed work is replayed after a restart; aborting now releases
		// read_committed consumers at once instead of at the transaction
		// timeout.
		if err := w.p.Abort(ctx); err != nil && !errors.Is(err, txn.ErrFenced) {
			errs = append(errs, err)
		}
		w.dirty = false
	}
	return errors.Join(errs...)
}
