package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
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
	stored  map[string]int64 // position key -> offset already stored
	dirty   bool             // the open transaction holds records
	// doubt is the commit whose outcome a lost connection hid, until
	// [sink.restart] decides it.
	doubt *commitToken
}

// commitToken marks one commit: a random value stored in __pipe_offsets
// (key [tokenKey]) inside the transaction, with the positions it stores.
type commitToken struct {
	value   int64
	changed map[string]int64
}

// tokenKey is the __pipe_offsets key of a writer's commit token.
func tokenKey(txid string) string { return txid + "#commit" }

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
	err := s.do(ctx, func(cl *kafka.Client) error {
		return createTopic(ctx, cl, OffsetsTopic, offsetsPartitions, -1, []kafka.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
	}
	if e.offsets, err = s.partitions(ctx, e, OffsetsTopic); err != nil {
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

// readHeld reads the committed positions whose keys want accepts from
// partition part of __pipe_offsets.
func (s *sink) readHeld(ctx context.Context, part int, want func(string) bool) (map[string]stdlib.Position, error) {
	recs, err := s.readLatest(ctx, part, want)
	if err != nil {
		return nil, err
	}
	held := make(map[string]stdlib.Position, len(recs))
	for k, r := range recs {
		var pos stdlib.Position
		if err := json.Unmarshal(r.Raw, &pos); err != nil {
			return nil, fmt.Errorf("position record %q at %d: %w", k, r.Pos.Offset, err)
		}
		held[k] = pos
	}
	return held, nil
}

// readLatest reads the last committed record of every key want accepts
// from partition part of __pipe_offsets, up to the end of the log as it
// was at the call. The writers of those keys are fenced by then, so their
// transactions are settled; other writers' transactions may still be
// open, and are skipped rather than waited for (read_uncommitted, with
// transactions settled by their markers). A lost connection starts the
// read over.
func (s *sink) readLatest(ctx context.Context, part int, want func(string) bool) (map[string]stdlib.Record, error) {
	var latest map[string]stdlib.Record
	err := s.do(ctx, func(cl *kafka.Client) error {
		latest = map[string]stdlib.Record{}
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
		return nil
	})
	return latest, err
}

// writeEOS buffers msgs (converted from batch[from[i]]) per writer and
// partition and produces the batches that filled up.
func (s *sink) writeEOS(ctx context.Context, batch []stdlib.Record, msgs []kafka.Message, from []int) error {
	e := s.eos
	ids := make([][]int, len(msgs))
	for i := range msgs {
		var err error
		if ids[i], err = s.partitions(ctx, e, msgs[i].Topic); err != nil {
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
// partitions concurrently, and recovers from a lost connection.
func (s *sink) produce(ctx context.Context, ready map[*txnWriter]map[topicPart][][]protocol.Record) error {
	if _, err := s.recover(ctx, s.sendTxn(ctx, ready)); err != nil {
		return fmt.Errorf("kafka sink %q: %w", s.cfg.Stage, err)
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
		got, err := s.readLatest(ctx, w.offPart, func(k string) bool { return k == tokenKey(w.txid) })
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
			return fmt.Errorf("kafka sink %q: checkpoint %d: %w", s.cfg.Stage, cp.ID, err)
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
	s.log.Debug("kafka sink committed", "stage", s.cfg.Stage, "txid", w.txid, "positions", changed)
	return nil
}

// committed records that w's transaction, storing changed, committed.
func (w *txnWriter) committed(changed map[string]int64) {
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
