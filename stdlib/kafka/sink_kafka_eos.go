package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
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

// eosState is the exactly-once half of the sink: one Kafka transaction per
// checkpoint interval.
type eosState struct {
	txid    string
	p       *txn.Producer
	parts   map[string][]int // partition ids per topic
	buf     map[topicPart]*partBuf
	offPart int              // our partition of __pipe_offsets
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

// heldKey is the __pipe_offsets key of one source partition's position.
func heldKey(txid string, p stdlib.Position) string {
	return txid + "|" + p.Source + "|" + p.Partition
}

func (s *sink) openEOS(ctx context.Context) ([]stdlib.Position, error) {
	e := &eosState{
		txid:   TransactionalID(s.cfg.Pipeline, s.cfg.Stage, s.cfg.Task),
		parts:  map[string][]int{},
		buf:    map[topicPart]*partBuf{},
		stored: map[string]int64{},
	}
	err := createTopic(ctx, s.cl, OffsetsTopic, offsetsPartitions, -1, []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: "compact"},
	})
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	n, err := e.partitions(ctx, s.cl, OffsetsTopic)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	h := fnv.New32a()
	h.Write([]byte(e.txid))
	e.offPart = n[int(h.Sum32()%uint32(len(n)))]

	// Fence older instances and abort their open transaction first, so that
	// the positions read next are final.
	e.p, err = txn.New(ctx, txn.Config{
		Client:          s.cl,
		TransactionalID: e.txid,
		Timeout:         s.cfg.Duration("transaction_timeout"),
		Compression:     s.compression,
	})
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	s.eos = e
	held, err := s.readHeld(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: read %s: %w", s.cfg.Stage, OffsetsTopic, err)
	}
	out := make([]stdlib.Position, 0, len(held))
	for k, p := range held {
		e.stored[k] = p.Offset
		out = append(out, p)
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

// readHeld reads this task's committed positions from __pipe_offsets, up
// to the end of the log as it was at the call: every transaction that wrote
// there before is committed or aborted by then.
func (s *sink) readHeld(ctx context.Context) (map[string]stdlib.Position, error) {
	e := s.eos
	res, err := s.cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		OffsetsTopic: {kafka.FirstOffsetOf(e.offPart), kafka.LastOffsetOf(e.offPart)},
	}})
	if err != nil {
		return nil, err
	}
	var first, end int64 = -1, -1
	for _, po := range res.Topics[OffsetsTopic] {
		if po.Partition != e.offPart {
			continue
		}
		if po.Error != nil {
			return nil, po.Error
		}
		first, end = po.FirstOffset, po.LastOffset
	}
	if first < 0 || end < 0 {
		return nil, fmt.Errorf("no offsets for partition %d", e.offPart)
	}
	raw, _ := codec.New("bytes", nil, codec.Options{})
	rd := &source{
		cfg:       stdlib.Config{Stage: s.cfg.Stage},
		log:       s.log,
		tr:        s.tr,
		cl:        s.cl,
		topics:    []string{OffsetsTopic},
		iso:       kafka.ReadCommitted,
		maxBytes:  8 << 20,
		maxWait:   100 * time.Millisecond,
		val:       raw,
		keyFormat: "string",
		stale:     true,
	}
	p := &partState{topic: OffsetsTopic, partition: e.offPart, key: partKey(OffsetsTopic, e.offPart), next: first, leader: -1}
	rd.parts = map[string]*partState{p.key: p}
	held := map[string]stdlib.Position{}
	prefix := e.txid + "|"
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
			if !strings.HasPrefix(k, prefix) {
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

func (s *sink) writeEOS(ctx context.Context, msgs []kafka.Message) error {
	e := s.eos
	limit := min(s.batchBytes, maxBatchBytes)
	ready := map[topicPart][][]protocol.Record{}
	for i := range msgs {
		m := &msgs[i]
		ids, err := e.partitions(ctx, s.cl, m.Topic)
		if err != nil {
			return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
		}
		key := topicPart{m.Topic, s.balancer.Balance(*m, ids...)}
		b := e.buf[key]
		if b == nil {
			b = &partBuf{}
			e.buf[key] = b
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
			ready[key] = append(ready[key], b.recs)
			b.recs, b.bytes = nil, 0
		}
		b.recs = append(b.recs, r)
		b.bytes += size
	}
	return s.produce(ctx, ready)
}

// maxBatchBytes keeps a batch under the brokers' default message.max.bytes.
const maxBatchBytes = 1000000

// flush produces every buffered record into the open transaction.
func (s *sink) flush(ctx context.Context) error {
	ready := map[topicPart][][]protocol.Record{}
	for k, b := range s.eos.buf {
		if len(b.recs) > 0 {
			ready[k] = append(ready[k], b.recs)
			b.recs, b.bytes = nil, 0
		}
	}
	return s.produce(ctx, ready)
}

// produce sends the batches of each partition in order, partitions
// concurrently.
func (s *sink) produce(ctx context.Context, ready map[topicPart][][]protocol.Record) error {
	e := s.eos
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for k, batches := range ready {
		e.dirty = true
		wg.Go(func() {
			for _, recs := range batches {
				if err := e.p.Produce(ctx, k.topic, k.partition, recs); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	return nil
}

func (s *sink) checkpointEOS(ctx context.Context, cp stdlib.Checkpoint) error {
	e := s.eos
	if err := s.flush(ctx); err != nil {
		return err
	}
	var recs []protocol.Record
	changed := map[string]int64{}
	for _, pos := range cp.Positions {
		k := heldKey(e.txid, pos)
		if old, ok := e.stored[k]; ok && old == pos.Offset {
			continue
		}
		v, err := json.Marshal(pos)
		if err != nil {
			return fmt.Errorf("kafka sink %q: encode position: %w", s.cfg.Stage, err)
		}
		recs = append(recs, protocol.Record{Key: protocol.NewBytes([]byte(k)), Value: protocol.NewBytes(v)})
		changed[k] = pos.Offset
	}
	if len(recs) > 0 {
		if err := e.p.Produce(ctx, OffsetsTopic, e.offPart, recs); err != nil {
			return fmt.Errorf("kafka sink %q: store positions: %w", s.cfg.Stage, err)
		}
		e.dirty = true
	}
	if !e.dirty {
		return nil
	}
	if err := e.p.Commit(ctx); err != nil {
		return fmt.Errorf("kafka sink %q: checkpoint %d: %w", s.cfg.Stage, cp.ID, err)
	}
	e.dirty = false
	for k, off := range changed {
		e.stored[k] = off
	}
	return nil
}

func (s *sink) closeEOS(ctx context.Context) error {
	e := s.eos
	clear(e.buf)
	if !e.dirty {
		return nil
	}
	// Unflushed work is replayed after a restart; aborting now releases
	// read_committed consumers at once instead of at the transaction timeout.
	if err := e.p.Abort(ctx); err != nil && !errors.Is(err, txn.ErrFenced) {
		return err
	}
	e.dirty = false
	return nil
}
