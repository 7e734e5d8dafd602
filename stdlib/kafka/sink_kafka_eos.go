package kafka

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
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
	stored  map[string]stdlib.Position // position key -> position already stored
	dirty   bool                       // the open transaction holds records
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

// heldRecord is the value of a position record in __pipe_offsets: the
// position (with the identity of its source partition) and the identity of
// the sink's topic its records were written to ("" when the sink has no
// fixed topic, and in records written before pipe stored it). A null
// value (a tombstone: SetPositions, [sink.forget]) forgets the key.
type heldRecord struct {
	stdlib.Position
	Target string `json:"target,omitempty"`
}

// holds reports whether a stored position still holds for the sink's
// topic as it is now: one stored for another incarnation of the topic
// (deleted and created again, on another cluster, or gone) does not, and
// when Open created the topic none stored before does.
func (s *sink) holds(r heldRecord) bool {
	switch {
	case s.topic == "":
		return true
	case r.Target == "":
		return !s.created
	}
	return r.Target == s.target
}

// lookupTarget looks up the identity of the sink's topic ("" when it does
// not exist).
func (s *sink) lookupTarget(ctx context.Context) error {
	if s.topic == "" {
		return nil
	}
	ids, err := s.conn.topicIdentities(ctx, []string{s.topic})
	if err != nil {
		return err
	}
	s.target = ids[s.topic]
	return nil
}

// offsetsPartition is the partition of __pipe_offsets (of offs) where the
// writer txid keeps its positions.
func offsetsPartition(txid string, offs []int) int {
	h := fnv.New32a()
	h.Write([]byte(txid))
	return offs[int(h.Sum32()%uint32(len(offs)))]
}

// createOffsetsTopic creates __pipe_offsets unless it exists.
func createOffsetsTopic(ctx context.Context, cl *kafka.Client) error {
	_, err := createTopic(ctx, cl, OffsetsTopic, offsetsPartitions, -1, []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: "compact"},
	})
	return err
}

func (s *sink) openEOS(ctx context.Context) ([]stdlib.Position, error) {
	e := &eosState{parts: map[string][]int{}, units: map[unitKey]*txnWriter{}}
	if err := createOffsetsTopic(ctx, s.cl); err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	if err := s.lookupTarget(ctx); err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	var err error
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
	held, _, err := s.readHeld(ctx, e.main.offPart, func(k string) bool { return strings.HasPrefix(k, prefix) })
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: read %s: %w", s.cfg.Stage, OffsetsTopic, err)
	}
	out := make([]stdlib.Position, 0, len(held))
	var gone []string
	for k, r := range held {
		if !s.holds(r) {
			gone = append(gone, k)
			continue
		}
		e.main.stored[k] = r.Position
		out = append(out, r.Position)
	}
	if err := s.forget(ctx, e.main, gone); err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	return out, nil
}

// forget deletes the position records keys of writer w that do not hold
// (see [sink.holds]) in a transaction of their own, at once: the topic
// they were stored for is gone, and what is stored next is for this one.
func (s *sink) forget(ctx context.Context, w *txnWriter, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	s.log.Warn("kafka sink: positions stored for another incarnation of its topic dropped",
		"stage", s.cfg.Stage, "topic", s.topic, "positions", len(keys), "created_now", s.created,
		"then", "the records they covered are written again")
	recs := make([]protocol.Record, len(keys))
	for i, k := range keys {
		recs[i] = protocol.Record{Key: protocol.NewBytes([]byte(k))}
	}
	if err := w.p.Produce(ctx, OffsetsTopic, w.offPart, recs); err != nil {
		return fmt.Errorf("forget positions: %w", err)
	}
	if err := w.p.Commit(ctx); err != nil {
		return fmt.Errorf("forget positions: %w", err)
	}
	return nil
}

// newWriter initialises a transactional producer for txid, fencing every
// older one.
func (s *sink) newWriter(ctx context.Context, txid string, unit *unitKey) (*txnWriter, error) {
	w := &txnWriter{
		txid: txid, unit: unit,
		offPart: offsetsPartition(txid, s.eos.offsets),
		buf:     map[topicPart]*partBuf{},
		stored:  map[string]stdlib.Position{},
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
	held := map[string]heldRecord{}
	for part, keys := range byPart {
		h, _, err := s.readHeld(ctx, part, func(k string) bool { return keys[k] })
		if err != nil {
			return nil, fmt.Errorf("kafka sink %q: read %s: %w", s.cfg.Stage, OffsetsTopic, err)
		}
		maps.Copy(held, h)
	}
	for _, w := range ws {
		k := heldKey(w.txid, stdlib.Position{Source: source, Partition: w.unit.partition})
		if r, ok := held[k]; ok && !s.holds(r) {
			delete(held, k)
			if err := s.forget(ctx, w, []string{k}); err != nil {
				return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
			}
		}
	}
	var out []stdlib.Position
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range ws {
		k := heldKey(w.txid, stdlib.Position{Source: source, Partition: w.unit.partition})
		if r, ok := held[k]; ok {
			p := r.Position
			w.stored[k] = p
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
// transactions settled by their markers). pending reports that one of
// those open transactions holds a wanted key.
func (s *sink) readHeld(ctx context.Context, part int, want func(string) bool) (held map[string]heldRecord, pending bool, err error) {
	res, err := s.cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		OffsetsTopic: {kafka.FirstOffsetOf(part), kafka.LastOffsetOf(part)},
	}})
	if err != nil {
		return nil, false, err
	}
	var first, end int64 = -1, -1
	for _, po := range res.Topics[OffsetsTopic] {
		if po.Partition != part {
			continue
		}
		if po.Error != nil {
			return nil, false, po.Error
		}
		first, end = po.FirstOffset, po.LastOffset
	}
	if first < 0 || end < 0 {
		return nil, false, fmt.Errorf("no offsets for partition %d", part)
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
	held = map[string]heldRecord{}
	for p.next < end {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		if rd.stale {
			if err := rd.refreshLeaders(ctx); err != nil {
				return nil, false, err
			}
		}
		recs, err := rd.fetch(ctx)
		if err != nil {
			return nil, false, err
		}
		for _, r := range recs {
			k, _ := r.Key.(string)
			if !want(k) {
				continue
			}
			if len(r.Raw) == 0 {
				delete(held, k)
				continue
			}
			var hr heldRecord
			if err := json.Unmarshal(r.Raw, &hr); err != nil {
				return nil, false, fmt.Errorf("position record %q at %d: %w", k, r.Pos.Offset, err)
			}
			held[k] = hr
		}
	}
	for _, recs := range rd.open {
		for _, r := range recs {
			if k, _ := r.Key.(string); want(k) {
				pending = true
			}
		}
	}
	return held, pending, nil
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
	changed := map[string]stdlib.Position{}
	for _, pos := range positions {
		k := heldKey(w.txid, pos)
		if old, ok := w.stored[k]; ok && old == pos {
			continue
		}
		v, err := json.Marshal(heldRecord{Position: pos, Target: s.target})
		if err != nil {
			return fmt.Errorf("encode position: %w", err)
		}
		recs = append(recs, protocol.Record{Key: protocol.NewBytes([]byte(k)), Value: protocol.NewBytes(v)})
		changed[k] = pos
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

// stageKeys reports whether a __pipe_offsets key is one of the stage's:
// of any task's own writer or of a writer of a partition it acquired.
func (s *sink) stageKeys() func(string) bool {
	prefix := strings.TrimSuffix(TransactionalID(s.cfg.Pipeline, s.cfg.Stage, 0), "0")
	return func(k string) bool { return strings.HasPrefix(k, prefix) }
}

// storedRecords reads the committed position records of every writer of
// the stage, by key, with the partition of __pipe_offsets each is in, and
// the partitions of __pipe_offsets (none when it does not exist). pending
// reports a transaction of the stage's writers still open: one that
// stores positions (a run is checkpointing), or one a crashed run left,
// which the broker aborts after transaction_timeout.
func (s *sink) storedRecords(ctx context.Context) (recs map[string]heldRecord, where map[string]int, offs []int, pending bool, err error) {
	meta, err := partitions(ctx, s.cl, OffsetsTopic)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		return nil, nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, nil, false, err
	}
	for _, p := range meta[OffsetsTopic] {
		offs = append(offs, p.ID)
	}
	recs, where = map[string]heldRecord{}, map[string]int{}
	want := s.stageKeys()
	for _, part := range offs {
		h, open, err := s.readHeld(ctx, part, want)
		if err != nil {
			return nil, nil, nil, false, fmt.Errorf("read %s: %w", OffsetsTopic, err)
		}
		pending = pending || open
		for k, r := range h {
			recs[k], where[k] = r, part
		}
	}
	return recs, where, offs, pending, nil
}

// connectUnopened gives a sink that was not opened (pipe offsets) a
// connection until the returned function is called.
func (s *sink) connectUnopened() func() {
	if s.cl != nil {
		return func() {}
	}
	s.tr = s.conn.transport()
	s.cl = s.conn.client(s.tr)
	return func() {
		s.tr.CloseIdleConnections()
		s.tr, s.cl = nil, nil
	}
}

// StoredPositions implements stdlib.PositionStore: the positions the
// stage's writers committed to __pipe_offsets that hold for its topic as
// it is now (see [sink.holds]). Writers that hold the same position for a
// partition (the tasks SetPositions wrote it for) give it once; writers
// that hold different ones each give theirs. Open transactions are not
// read.
func (s *sink) StoredPositions(ctx context.Context) ([]stdlib.Position, error) {
	if !s.exactlyOnce() {
		return nil, nil
	}
	defer s.connectUnopened()()
	recs, _, _, _, err := s.storedRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	if err := s.lookupTarget(ctx); err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	seen := map[stdlib.Position]bool{}
	var out []stdlib.Position
	for _, r := range recs {
		if s.holds(r) && !seen[r.Position] {
			seen[r.Position] = true
			out = append(out, r.Position)
		}
	}
	slices.SortFunc(out, func(a, b stdlib.Position) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Partition, b.Partition),
			cmp.Compare(a.Offset, b.Offset), strings.Compare(a.Identity, b.Identity))
	})
	return out, nil
}

// SetPositions implements stdlib.PositionStore. It writes, outside any
// transaction, a tombstone for every position record of the partitions
// reset (of every writer of the stage), then set for every task's own
// writer, which reads them back when the next run opens the sink. It
// refuses while a transaction of the stage's writers is open: one
// committed after these records would bring its positions back on the
// next read. The pipeline must not run meanwhile (pipe offsets holds its
// state directory; stop its other processes too): a running writer
// stores its own positions again at its next checkpoint.
func (s *sink) SetPositions(ctx context.Context, source string, reset []string, set []stdlib.Position) error {
	if !s.exactlyOnce() {
		return nil
	}
	defer s.connectUnopened()()
	recs, where, offs, pending, err := s.storedRecords(ctx)
	if err != nil {
		return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	if pending {
		return fmt.Errorf("kafka sink %q: a transaction of its writers is still open in %s: stop the pipeline, or wait out its transaction_timeout after a crash, and try again", s.cfg.Stage, OffsetsTopic)
	}
	writes := map[int]map[string]*heldRecord{} // partition -> key -> value (nil: tombstone)
	put := func(part int, k string, v *heldRecord) {
		if writes[part] == nil {
			writes[part] = map[string]*heldRecord{}
		}
		writes[part][k] = v
	}
	for k, r := range recs {
		if r.Source == source && (len(reset) == 0 || slices.Contains(reset, r.Partition)) {
			put(where[k], k, nil)
		}
	}
	if len(set) > 0 {
		if offs == nil {
			if err := createOffsetsTopic(ctx, s.cl); err != nil {
				return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
			}
			meta, err := partitions(ctx, s.cl, OffsetsTopic)
			if err != nil {
				return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
			}
			for _, p := range meta[OffsetsTopic] {
				offs = append(offs, p.ID)
			}
		}
		if err := s.lookupTarget(ctx); err != nil {
			return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
		}
		for task := range max(s.cfg.Tasks, 1) {
			txid := TransactionalID(s.cfg.Pipeline, s.cfg.Stage, task)
			for _, p := range set {
				put(offsetsPartition(txid, offs), heldKey(txid, p), &heldRecord{Position: p, Target: s.target})
			}
		}
	}
	for part, kv := range writes {
		recs := make([]kafka.Record, 0, len(kv))
		for k, v := range kv {
			r := kafka.Record{Key: kafka.NewBytes([]byte(k))}
			if v != nil {
				b, err := json.Marshal(v)
				if err != nil {
					return fmt.Errorf("kafka sink %q: encode position: %w", s.cfg.Stage, err)
				}
				r.Value = kafka.NewBytes(b)
			}
			recs = append(recs, r)
		}
		res, err := s.cl.Produce(ctx, &kafka.ProduceRequest{
			Topic: OffsetsTopic, Partition: part, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...),
		})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			return fmt.Errorf("kafka sink %q: write %s: %w", s.cfg.Stage, OffsetsTopic, err)
		}
	}
	return nil
}
