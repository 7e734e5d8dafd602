package kafka

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
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
	"pipe.dev/pipe/stdlib/retry"
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
	// initMu orders Acquire's new writers and restart's new epochs of
	// writers, so that restart never revives a writer Acquire replaced.
	initMu sync.Mutex
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
	// doubt is the commit whose outcome a lost connection hid, until
	// [sink.restart] decides it.
	doubt *commitToken
}

// commitToken marks one commit: a random value stored in __pipe_offsets
// (key [tokenKey]) inside the transaction, with the positions it stores.
type commitToken struct {
	value   int64
	changed map[string]stdlib.Position
}

// tokenKey is the __pipe_offsets key of a writer's commit token. Unlike
// the writer's position keys ([heldKey]) it does not begin with txid, so
// that no reader of positions takes it for one.
func tokenKey(txid string) string { return "commit|" + txid }

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

// instanceTxID is the transactional.id of a task's own writer in one
// instance of its pipeline: instances other than the first add "#N", so
// that instances sharing a grouped source's partitions do not fence each
// other's writer (their units, one per partition, fence as they move).
func instanceTxID(task string, instance int) string {
	if instance == 0 {
		return task
	}
	return task + "#" + strconv.Itoa(instance)
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
	ids, err := s.conn.identities(ctx, s.log, "kafka sink", []string{s.topic})
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
	err := s.do(ctx, func(cl *kafka.Client) error { return createOffsetsTopic(ctx, cl) })
	if err != nil {
		return nil, err
	}
	if err := s.lookupTarget(ctx); err != nil {
		return nil, err
	}
	if e.offsets, err = s.partitions(ctx, e, OffsetsTopic); err != nil {
		return nil, err
	}
	s.eos = e
	// Fence older instances and abort their open transaction first, so that
	// the positions read next are final.
	e.main, err = s.newWriter(ctx, instanceTxID(TransactionalID(s.cfg.Pipeline, s.cfg.Stage, s.cfg.Task), s.cfg.Instance), nil)
	if err != nil {
		return nil, err
	}
	prefix := e.main.txid + "|"
	held, _, err := s.readHeld(ctx, e.main.offPart, func(k string) bool { return strings.HasPrefix(k, prefix) })
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", OffsetsTopic, err)
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
		return nil, err
	}
	return out, nil
}

// forget deletes the position records keys of writer w that do not hold
// (see [sink.holds]) in a transaction of their own, at once: the topic
// they were stored for is gone, and what is stored next is for this one.
// A lost connection starts the transaction over in the writer's next
// epoch; deleting twice does no harm.
func (s *sink) forget(ctx context.Context, w *txnWriter, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	s.log.Warn("kafka sink: positions stored for another incarnation of its topic dropped",
		"topic", s.topic, "positions", len(keys), "created_now", s.created,
		"then", "the records they covered are written again")
	recs := make([]protocol.Record, len(keys))
	for i, k := range keys {
		recs[i] = protocol.Record{Key: protocol.NewBytes([]byte(k))}
	}
	again := false
	err := retry.Do(ctx, s.conn.backoff(s.log, "kafka sink"), transient, func() error {
		if again {
			if err := w.p.Restart(ctx, s.link.renew(s.link.client())); err != nil {
				return err
			}
			w.p.Forget() // produced again below
		}
		again = true
		err := w.p.Produce(ctx, OffsetsTopic, w.offPart, recs)
		if err == nil {
			err = w.p.Commit(ctx)
		}
		return err
	})
	if err != nil {
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
	err := s.do(ctx, func(cl *kafka.Client) (err error) {
		w.p, err = txn.New(ctx, txn.Config{
			Client:          cl,
			TransactionalID: txid,
			Timeout:         s.cfg.Duration("transaction_timeout"),
			Compression:     s.compression,
		})
		return err
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
	e.initMu.Lock()
	defer e.initMu.Unlock()
	ws := make([]*txnWriter, len(partitions))
	errs := make([]error, len(partitions))
	var wg sync.WaitGroup
	for i, p := range partitions {
		wg.Go(func() {
			u := &unitKey{source, p}
			ws[i], errs[i] = s.newWriter(ctx, unitTxID(TransactionalID(s.cfg.Pipeline, s.cfg.Stage, s.cfg.Task), source, p), u)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
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
			return nil, fmt.Errorf("read %s: %w", OffsetsTopic, err)
		}
		maps.Copy(held, h)
	}
	for _, w := range ws {
		k := heldKey(w.txid, stdlib.Position{Source: source, Partition: w.unit.partition})
		if r, ok := held[k]; ok && !s.holds(r) {
			delete(held, k)
			if err := s.forget(ctx, w, []string{k}); err != nil {
				return nil, err
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
			s.log.Debug("kafka sink acquired partition", "source", source, "partition", w.unit.partition, "held", p.Offset)
		} else {
			s.log.Debug("kafka sink acquired partition", "source", source, "partition", w.unit.partition)
		}
		e.units[*w.unit] = w
	}
	return out, nil
}

// partitions returns the partition ids of topic, cached in e.
func (s *sink) partitions(ctx context.Context, e *eosState, topic string) ([]int, error) {
	if ps, ok := e.parts[topic]; ok {
		return ps, nil
	}
	var meta map[string][]kafka.Partition
	err := s.do(ctx, func(cl *kafka.Client) (err error) {
		meta, err = partitions(ctx, cl, topic)
		return err
	})
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

// readHeld reads the committed position records whose keys want accepts
// from partition part of __pipe_offsets (see [sink.readLatest]); a key
// whose last record is a tombstone is not held. pending reports that a
// transaction still open holds a wanted key.
func (s *sink) readHeld(ctx context.Context, part int, want func(string) bool) (held map[string]heldRecord, pending bool, err error) {
	recs, pending, err := s.readLatest(ctx, part, want)
	if err != nil {
		return nil, false, err
	}
	held = make(map[string]heldRecord, len(recs))
	for k, r := range recs {
		if len(r.Raw) == 0 {
			continue
		}
		var hr heldRecord
		if err := json.Unmarshal(r.Raw, &hr); err != nil {
			return nil, false, fmt.Errorf("position record %q at %d: %w", k, r.Pos.Offset, err)
		}
		held[k] = hr
	}
	return held, pending, nil
}

// readLatest reads the last committed record of every key want accepts
// from partition part of __pipe_offsets, up to the end of the log as it
// was at the call. The writers of those keys are fenced by then, so their
// transactions are settled; other writers' transactions may still be
// open, and are skipped rather than waited for (read_uncommitted, with
// transactions settled by their markers); pending reports that one of
// those holds a wanted key. A lost connection starts the read over.
func (s *sink) readLatest(ctx context.Context, part int, want func(string) bool) (latest map[string]stdlib.Record, pending bool, err error) {
	err = s.do(ctx, func(cl *kafka.Client) error {
		latest, pending = map[string]stdlib.Record{}, false
		res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			OffsetsTopic: {kafka.FirstOffsetOf(part), kafka.LastOffsetOf(part)},
		}})
		if err != nil {
			return err
		}
		var first, end int64 = -1, -1
		for _, po := range res.Topics[OffsetsTopic] {
			if po.Partition != part {
				continue
			}
			if po.Error != nil {
				return po.Error
			}
			first, end = po.FirstOffset, po.LastOffset
		}
		if first < 0 || end < 0 {
			return fmt.Errorf("no offsets for partition %d", part)
		}
		raw, _ := codec.New("bytes", nil, codec.Options{})
		rd := &source{
			cfg:       stdlib.Config{Stage: s.cfg.Stage},
			log:       s.log,
			conn:      s.conn,
			link:      s.link,
			topics:    []string{OffsetsTopic},
			iso:       kafka.ReadUncommitted,
			open:      map[int64][]stdlib.Record{},
			maxBytes:  8 << 20,
			maxWait:   100 * time.Millisecond,
			val:       raw,
			keyFormat: "string",
		}
		p := &partState{topic: OffsetsTopic, partition: part, key: partKey(OffsetsTopic, part), next: first, leader: -1}
		rd.parts = map[string]*partState{p.key: p}
		for p.next < end {
			if err := ctx.Err(); err != nil {
				return err
			}
			recs, err := rd.fetch(ctx, cl)
			if err != nil {
				return err
			}
			for _, r := range recs {
				if k, _ := r.Key.(string); want(k) {
					latest[k] = r
				}
			}
		}
		for _, recs := range rd.open {
			for _, r := range recs {
				if k, _ := r.Key.(string); want(k) {
					pending = true
				}
			}
		}
		return nil
	})
	return latest, pending, err
}

// writeEOS buffers msgs (converted from batch[from[i]]) per writer and
// partition and produces the batches that filled up.
func (s *sink) writeEOS(ctx context.Context, batch []stdlib.Record, msgs []kafka.Message, from []int) error {
	e := s.eos
	ids := make([][]int, len(msgs))
	for i := range msgs {
		var err error
		if ids[i], err = s.partitions(ctx, e, msgs[i].Topic); err != nil {
			return err
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
				r.Headers[j] = protocol.Header(h)
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
// partitions concurrently, and recovers from a lost connection.
func (s *sink) produce(ctx context.Context, ready map[*txnWriter]map[topicPart][][]protocol.Record) error {
	if _, err := s.recover(ctx, s.sendTxn(ctx, ready)); err != nil {
		return err
	}
	return nil
}

// sendTxn sends the batches of each writer and partition in order,
// partitions concurrently, and returns each failed writer's first error.
// After an error every batch is still handed to the writer's producer,
// which keeps what it cannot send for a replay.
func (s *sink) sendTxn(ctx context.Context, ready map[*txnWriter]map[topicPart][][]protocol.Record) map[*txnWriter]error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs = map[*txnWriter]error{}
	)
	for w, parts := range ready {
		for k, batches := range parts {
			w.dirty = true
			wg.Go(func() {
				var first error
				for _, recs := range batches {
					if err := w.p.Produce(ctx, k.topic, k.partition, recs); err != nil && first == nil {
						first = err
					}
				}
				if first != nil {
					mu.Lock()
					if errs[w] == nil {
						errs[w] = first
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errs
}

// recover deals with the errors of the writers in errs. When any is a
// lost connection, every open transaction is suspect (a broker that
// restarted aborted them; fencing errors seen meanwhile may come from
// that): restart starts them over and recover reports restarted. Else
// each error is qualified by writerErr.
func (s *sink) recover(ctx context.Context, errs map[*txnWriter]error) (restarted bool, err error) {
	for _, err := range errs {
		if transient(err) && ctx.Err() == nil {
			return true, s.restart(ctx, err)
		}
	}
	var out []error
	for w, err := range errs {
		if err = s.writerErr(w, err); err != nil {
			out = append(out, err)
		}
	}
	return false, errors.Join(out...)
}

// restart brings every writer with an open transaction back after a lost
// connection: after the backoff's wait and on a fresh transport, it
// initialises the writer's producer again for its next epoch, which
// aborts the open transaction (the broker refuses when another process
// took the transactional id over: that is fencing, as before). A commit
// whose outcome the loss hid is decided by reading back its token: done
// if it committed; else, as for every other writer, the records handed to
// the transaction since it began are sent again in a new one. Nothing is
// committed twice and nothing partial is committed. It gives up after
// retry_timeout.
func (s *sink) restart(ctx context.Context, cause error) error {
	for {
		if err := s.bo.Wait(ctx, cause); err != nil {
			return err
		}
		cl := s.link.renew(s.link.client())
		cause = nil
		for _, w := range s.eos.writers() {
			if !w.dirty {
				continue
			}
			err := s.restartCurrent(ctx, w, cl)
			if err == nil {
				continue
			}
			if transient(err) && ctx.Err() == nil {
				cause = err
				break
			}
			if err = s.writerErr(w, err); err != nil {
				return err
			}
		}
		if cause == nil {
			return nil
		}
	}
}

// restartCurrent restarts w unless Acquire replaced it meanwhile: its
// transaction is then gone, and its partition replayed from what was
// committed.
func (s *sink) restartCurrent(ctx context.Context, w *txnWriter, cl *kafka.Client) error {
	e := s.eos
	e.initMu.Lock()
	defer e.initMu.Unlock()
	if !e.current(w) {
		return nil
	}
	return s.restartWriter(ctx, w, cl)
}

// current reports whether w is the task's writer or the writer of a
// partition this process holds now.
func (e *eosState) current(w *txnWriter) bool {
	if w.unit == nil {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.units[*w.unit] == w
}

func (s *sink) restartWriter(ctx context.Context, w *txnWriter, cl *kafka.Client) error {
	if err := w.p.Restart(ctx, cl); err != nil {
		return err
	}
	if t := w.doubt; t != nil {
		got, _, err := s.readLatest(ctx, w.offPart, func(k string) bool { return k == tokenKey(w.txid) })
		if err != nil {
			return err
		}
		w.doubt = nil
		var v int64
		if r, ok := got[tokenKey(w.txid)]; ok && json.Unmarshal(r.Raw, &v) == nil && v == t.value {
			s.log.Info("kafka sink: commit in doubt had committed", "txid", w.txid)
			w.p.Forget()
			w.committed(t.changed)
			return nil
		}
	}
	return w.p.Replay(ctx)
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
	if !s.eos.current(w) {
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
	for {
		if err := s.flush(ctx); err != nil {
			return err
		}
		// Each writer stores its positions: a unit its own partition's,
		// the task's writer every other.
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
			errs = map[*txnWriter]error{}
		)
		for _, w := range ws {
			wg.Go(func() {
				if err := s.commitWriter(ctx, w, pos[w]); err != nil {
					mu.Lock()
					errs[w] = err
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		restarted, err := s.recover(ctx, errs)
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", cp.ID, err)
		}
		if !restarted {
			s.bo.Reset()
			return nil
		}
		// The open transactions start over: commit them again.
	}
}

// commitWriter stores the positions that changed in w's transaction, with
// a new commit token, and commits it, if it holds anything.
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
	if len(recs) == 0 && !w.dirty {
		return nil
	}
	t := &commitToken{value: rand.Int64(), changed: changed}
	recs = append(recs, protocol.Record{
		Key:   protocol.NewBytes([]byte(tokenKey(w.txid))),
		Value: protocol.NewBytes(strconv.AppendInt(nil, t.value, 10)),
	})
	w.dirty = true
	if err := w.p.Produce(ctx, OffsetsTopic, w.offPart, recs); err != nil {
		return fmt.Errorf("store positions: %w", err)
	}
	if err := w.p.Commit(ctx); err != nil {
		if !errors.Is(err, txn.ErrFenced) {
			w.doubt = t // it may have committed
		}
		return err
	}
	w.committed(changed)
	s.log.Debug("kafka sink committed", "txid", w.txid, "positions", changed)
	return nil
}

// committed records that w's transaction, storing changed, committed.
func (w *txnWriter) committed(changed map[string]stdlib.Position) {
	w.dirty = false
	maps.Copy(w.stored, changed)
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
		// timeout. A writer that lost its connection or was fenced has
		// nothing to abort that the next instance does not abort anyway.
		if err := w.p.Abort(ctx); err != nil && !errors.Is(err, txn.ErrFenced) && !transient(err) {
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
	offs, err = s.offsetsPartitions(ctx)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		return nil, nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, nil, false, err
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

// offsetsPartitions returns the partition ids of __pipe_offsets.
func (s *sink) offsetsPartitions(ctx context.Context) ([]int, error) {
	var meta map[string][]kafka.Partition
	err := s.do(ctx, func(cl *kafka.Client) (err error) {
		meta, err = partitions(ctx, cl, OffsetsTopic)
		return err
	})
	var offs []int
	for _, p := range meta[OffsetsTopic] {
		offs = append(offs, p.ID)
	}
	return offs, err
}

// connectUnopened gives a sink that was not opened (pipe offsets) a
// connection until the returned function is called.
func (s *sink) connectUnopened() func() {
	if s.link != nil {
		return func() {}
	}
	s.link = newLink(s.conn)
	return func() {
		s.link.close()
		s.link = nil
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
		return nil, err
	}
	if err := s.lookupTarget(ctx); err != nil {
		return nil, err
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
// writer, which reads them back when the next run opens the sink, and for
// every task's writer of each partition set, which Acquire reads back. It
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
		return err
	}
	if pending {
		return fmt.Errorf("a transaction of its writers is still open in %s: stop the pipeline, or wait out its transaction_timeout after a crash, and try again", OffsetsTopic)
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
			if err := s.do(ctx, func(cl *kafka.Client) error { return createOffsetsTopic(ctx, cl) }); err != nil {
				return err
			}
			if offs, err = s.offsetsPartitions(ctx); err != nil {
				return err
			}
		}
		if err := s.lookupTarget(ctx); err != nil {
			return err
		}
		// Every task's own writer (Open reads it back) and every task's
		// writer of each partition set (Acquire reads it back when a
		// consumer group hands the partition over): the sink holds the
		// position set whichever way it resumes.
		for task := range max(s.cfg.Tasks, 1) {
			txid := TransactionalID(s.cfg.Pipeline, s.cfg.Stage, task)
			for _, p := range set {
				p.Source = source
				r := &heldRecord{Position: p, Target: s.target}
				put(offsetsPartition(txid, offs), heldKey(txid, p), r)
				unit := unitTxID(txid, source, p.Partition)
				put(offsetsPartition(unit, offs), heldKey(unit, p), r)
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
					return fmt.Errorf("encode position: %w", err)
				}
				r.Value = kafka.NewBytes(b)
			}
			recs = append(recs, r)
		}
		// Written again after a lost connection: the same records again
		// change nothing.
		err := s.do(ctx, func(cl *kafka.Client) error {
			res, err := cl.Produce(ctx, &kafka.ProduceRequest{
				Topic: OffsetsTopic, Partition: part, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...),
			})
			if err == nil {
				err = res.Error
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("write %s: %w", OffsetsTopic, err)
		}
	}
	return nil
}
