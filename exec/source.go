package exec

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pipe.dev/pipe/stdlib"
)

// sourceTask runs one Source with two goroutines: read drives the Source
// (the only one calling it) and run routes the batches and injects
// barriers, so an idle source does not hold checkpoints back.
type sourceTask struct {
	r      *run
	s      *stageRT
	task   int
	src    stdlib.Source
	rt     *router
	resume *handover
	opened bool

	req     chan *barrier
	results chan readResult

	commitMu  sync.Mutex
	commitPos []stdlib.Position
	commitCh  chan struct{}
	committed map[partKey]stdlib.Position

	// ident holds the identity of every partition the source resumed or
	// acquired; barriers carry it in their positions. restart holds the
	// partitions Resume started afresh for an exactly-once sink's sake.
	identMu sync.Mutex
	ident   map[partKey]string
	restart map[partKey]bool

	// last emitted position per partition; cur caches the partition of the
	// previous record so the map is touched once per partition run.
	last   map[partKey]int64
	cur    partKey
	curOff int64
	curSet bool

	// touched lists the partitions emit left this batch; pub holds the
	// last emitted positions for snapshots (updated once per batch).
	touched []partKey
	pubMu   sync.Mutex
	pub     map[partKey]int64

	// For the quiet-input checkpoint (coordinator.quiet): readSince is
	// when the Read under way began (Unix ns; 0: none is), caughtUp that
	// the input has nothing more waiting as far as the task knows (the
	// last Read came back empty, the source said so through cu, or reading
	// ended).
	cu        stdlib.CaughtUpper
	readSince atomic.Int64
	caughtUp  atomic.Bool
}

func newSourceTask(r *run, s *stageRT, task int, src stdlib.Source) *sourceTask {
	cu, _ := src.(stdlib.CaughtUpper)
	return &sourceTask{
		cu: cu,
		r:  r, s: s, task: task, src: src,
		req:       make(chan *barrier, 1),
		results:   make(chan readResult),
		commitCh:  make(chan struct{}, 1),
		committed: map[partKey]stdlib.Position{},
		ident:     map[partKey]string{},
		restart:   map[partKey]bool{},
		last:      map[partKey]int64{},
		pub:       map[partKey]int64{},
	}
}

// postCommit hands the task positions to commit; called by the coordinator
// after the checkpoint covering them is durable.
func (t *sourceTask) postCommit(pos []stdlib.Position) {
	t.commitMu.Lock()
	t.commitPos = pos
	t.commitMu.Unlock()
	select {
	case t.commitCh <- struct{}{}:
	default:
	}
}

// commit commits the posted positions that advanced.
func (t *sourceTask) commit(ctx context.Context) error {
	t.commitMu.Lock()
	pos := t.commitPos
	t.commitPos = nil
	t.commitMu.Unlock()
	var todo []stdlib.Position
	for _, p := range pos {
		k := partKey{p.Source, p.Partition}
		if c, ok := t.committed[k]; ok && c.Offset >= p.Offset && c.Identity == p.Identity {
			continue
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return nil
	}
	if err := t.src.Commit(ctx, todo); err != nil {
		return t.s.fail(fmt.Errorf("committing positions: %w", err))
	}
	for _, p := range todo {
		t.committed[partKey{p.Source, p.Partition}] = p
	}
	return nil
}

// readResult is what one Read returned.
type readResult struct {
	batch []stdlib.Record
	err   error
}

// read is the goroutine that drives the Source (Read, Commit, Close: no
// other goroutine calls it). It commits completed checkpoints between two
// reads, hands each batch to the task goroutine, and after the last read
// keeps committing until the final checkpoint completed.
func (t *sourceTask) read(ctx context.Context) (err error) {
	defer t.s.closeInto(ctx, &err, t.src.Close)
	defer t.s.recoverPanic(&err)
	for {
		select {
		case <-t.commitCh:
			if err := t.commit(ctx); err != nil {
				return err
			}
		default:
		}
		if err := t.whilePaused(ctx); err != nil {
			return err
		}
		t.readSince.Store(time.Now().UnixNano())
		batch, rerr := t.src.Read(t.r.rctx)
		t.readSince.Store(0)
		if len(batch) == 0 && rerr == nil {
			t.caughtUp.Store(true)
			continue
		}
		t.caughtUp.Store(rerr != nil || (t.cu != nil && t.cu.CaughtUp()))
		// A batch read while the run was paused waits for the resume.
		if err := t.whilePaused(ctx); err != nil {
			return err
		}
		select {
		case t.results <- readResult{batch, rerr}:
		case <-ctx.Done():
			return errStopped
		}
		if rerr != nil {
			break
		}
	}
	for {
		select {
		case <-t.commitCh:
			if err := t.commit(ctx); err != nil {
				return err
			}
		case <-t.r.finished:
			return t.commit(ctx)
		case <-ctx.Done():
			return errStopped
		}
	}
}

// run is the task goroutine: it routes what the reader read and injects
// barriers when the coordinator asks, even while a Read is blocked.
func (t *sourceTask) run(ctx context.Context) (err error) {
	defer t.s.recoverPanic(&err)
	t.rt = newRouter(t.r, t.s, t.task)
	for {
		select {
		case res := <-t.results:
			if len(res.batch) > 0 {
				if err := t.emit(ctx, res.batch); err != nil {
					return err
				}
			}
			switch {
			case res.err == nil:
			case errors.Is(res.err, stdlib.ErrEndOfInput) || t.r.rctx.Err() != nil:
				if ctx.Err() != nil {
					return errStopped
				}
				if err := t.rt.flush(ctx); err != nil {
					return err
				}
				if err := t.r.control(ctrlMsg{kind: ctrlDone, src: t}); err != nil {
					return err
				}
			default:
				return t.s.fail(res.err)
			}
		case b := <-t.req:
			if err := t.inject(ctx, b); err != nil || b.final {
				return err
			}
		case <-ctx.Done():
			return errStopped
		}
	}
}

// emit routes a batch read from the source (the batch is ours: when the
// main output is a single task it goes on as it is).
func (t *sourceTask) emit(ctx context.Context, batch []stdlib.Record) error {
	start := time.Now()
	m := t.rt.m
	m.received.Add(int64(len(batch)))
	sent := t.rt.sent
	direct := t.rt.direct != nil
	n := 0
	var bytes int
	for i := range batch {
		rec := &batch[i]
		if rec.Pos.Source == "" {
			rec.Pos.Source = t.s.st.Name
		}
		if !t.curSet || rec.Pos.Partition != t.cur.partition || rec.Pos.Source != t.cur.source {
			if t.curSet {
				t.last[t.cur] = t.curOff
				t.touched = append(t.touched, t.cur)
			}
			t.cur, t.curSet = partKey{rec.Pos.Source, rec.Pos.Partition}, true
		}
		t.curOff = rec.Pos.Offset
		bytes += len(rec.Raw)
		if rec.Err != nil {
			if err := t.r.failure(ctx, t.s, t.rt, DecodeError, t.s.policy, rec, t.s.at, fmt.Errorf("malformed input: %w", rec.Err), nil); err != nil {
				return err
			}
			continue
		}
		if direct {
			if n != i {
				batch[n] = *rec
			}
			n++
			continue
		}
		if err := t.rt.emit(ctx, *rec, t.rt.main); err != nil {
			return err
		}
	}
	if direct {
		clear(batch[n:])
		if err := t.rt.sendDirect(ctx, batch[:n]); err != nil {
			return err
		}
	} else {
		t.r.recycler.PutBatch(batch) // its records were copied on
	}
	m.receivedBytes.Add(int64(bytes))
	m.sent.Add(t.rt.sent - sent)
	t.publish()
	err := t.rt.flush(ctx)
	m.batch.since(start)
	return err
}

// publish makes the positions emit reached visible to snapshots.
func (t *sourceTask) publish() {
	t.pubMu.Lock()
	for _, k := range t.touched {
		t.pub[k] = t.last[k]
	}
	if t.curSet {
		t.pub[t.cur] = t.curOff
	}
	t.pubMu.Unlock()
	t.touched = t.touched[:0]
}

// positions returns the last emitted offset of every partition.
func (t *sourceTask) positions() map[partKey]int64 {
	t.pubMu.Lock()
	defer t.pubMu.Unlock()
	return maps.Clone(t.pub)
}

// whilePaused waits while the run is paused, committing what completed
// checkpoints post; it returns at once when the run stops reading. The
// read goroutine calls it before each Read and before it hands a batch on,
// so that a Read in flight when the run paused emits nothing until Resume.
func (t *sourceTask) whilePaused(ctx context.Context) error {
	for {
		gate := t.r.paused.Load()
		if gate == nil || t.r.rctx.Err() != nil {
			return nil
		}
		select {
		case <-*gate:
		case <-t.commitCh:
			if err := t.commit(ctx); err != nil {
				return err
			}
		case <-t.r.rctx.Done():
		case <-ctx.Done():
			return errStopped
		}
	}
}

// inject sends barrier b downstream with the task's positions and reports
// them to the coordinator; after the final barrier it ends the stream.
func (t *sourceTask) inject(ctx context.Context, b *barrier) error {
	if t.curSet {
		t.last[t.cur] = t.curOff
	}
	pos := make([]stdlib.Position, 0, len(t.last))
	t.identMu.Lock()
	for k, off := range t.last {
		pos = append(pos, stdlib.Position{Source: k.source, Partition: k.partition, Offset: off, Identity: t.ident[k]})
	}
	t.identMu.Unlock()
	mine := &barrier{id: b.id, final: b.final, pos: pos}
	if err := t.rt.control(ctx, message{barrier: mine}); err != nil {
		return err
	}
	if err := t.r.control(ctrlMsg{kind: ctrlReport, id: b.id, src: t, pos: pos}); err != nil {
		return err
	}
	if !b.final {
		return nil
	}
	return t.rt.control(ctx, message{eos: true})
}

// fresh reports whether partition k was started afresh by Resume; set
// records that it was.
func (t *sourceTask) fresh(k partKey, set bool) bool {
	t.identMu.Lock()
	defer t.identMu.Unlock()
	if set {
		t.restart[k] = true
	}
	return t.restart[k]
}

// handover is the Resumer a source task hands its Source: it checks the
// identity of each partition against the positions stored for it and
// implements the partition handover of [stdlib.Handover].
type handover struct {
	t *sourceTask
}

// Resume implements stdlib.Resumer. A partition resumes after the state
// store's position, lowered to what any exactly-once sink holds for it;
// with no stored position it starts afresh (sinks drop what they already
// hold). Positions of another identity are left out, with a warning. When
// an exactly-once sink holds nothing of a partition the store has (its
// target is new, or its positions were reset), the partition starts afresh
// too, so that sink gets its records: the others drop them as replays.
func (h *handover) Resume(partition, identity string) (int64, bool) {
	t := h.t
	k := partKey{t.s.st.Name, partition}
	t.identMu.Lock()
	t.ident[k] = identity
	t.identMu.Unlock()
	off, have := int64(0), false
	if p, ok := t.r.prev.Lookup(k.source, k.partition); ok {
		if stdlib.SameIdentity(p.Identity, identity) {
			off, have = p.Offset, true
		} else {
			t.r.mismatch("the state store", p, identity)
		}
	}
	var empty []string
	for _, st := range t.r.sinks {
		if !st.s.sources[k.source] {
			continue
		}
		held, ok, acquired := st.confirm(k, identity)
		switch {
		case ok && have && held < off:
			off = held
		case !ok && !acquired && st.s.st.Delivery == string(stdlib.ExactlyOnce):
			empty = append(empty, st.s.st.Name)
		}
	}
	if have && len(empty) > 0 {
		have = false
		t.fresh(k, true)
		t.r.cfg.Logger.Warn("an exactly-once sink holds nothing of a partition read before: it is read again from where the source starts",
			"stage", k.source, "partition", k.partition, "sinks", strings.Join(slices.Compact(empty), ", "), "stored_offset", off,
			"then", "sinks that hold its records drop them as replays")
	}
	return off, have
}

// StoredPositions implements stdlib.PositionLister.
func (h *handover) StoredPositions() []stdlib.Position {
	t := h.t
	name := t.s.st.Name
	var out []stdlib.Position
	if t.r.prev != nil {
		for _, p := range t.r.prev.Positions {
			if p.Source == name {
				out = append(out, p)
			}
		}
	}
	for _, st := range t.r.sinks {
		if !st.s.sources[name] {
			continue
		}
		st.mu.Lock()
		for k, p := range st.stored {
			if k.source == name {
				out = append(out, p)
			}
		}
		st.mu.Unlock()
	}
	return out
}

// Fresh implements stdlib.Handover.
func (h *handover) Fresh(partition string) bool {
	return h.t.fresh(partKey{h.t.s.st.Name, partition}, false)
}

// Settle implements stdlib.Handover: it runs on the task's read goroutine
// (inside Source.Read), so it may commit.
func (h *handover) Settle(ctx context.Context) error {
	if err := h.t.r.awaitCheckpoint(ctx); err != nil {
		return err
	}
	return h.t.commit(ctx)
}

// Acquire implements stdlib.Handover.
func (h *handover) Acquire(ctx context.Context, partitions map[string]string) (map[string]int64, error) {
	name := h.t.s.st.Name
	h.t.identMu.Lock()
	for p, id := range partitions {
		h.t.ident[partKey{name, p}] = id
	}
	h.t.identMu.Unlock()
	names := slices.Sorted(maps.Keys(partitions))
	out := map[string]int64{}
	for _, st := range h.t.r.sinks {
		a, ok := st.sink.(stdlib.Acquirer)
		if !ok || !st.s.sources[name] {
			continue
		}
		held, err := a.Acquire(ctx, name, names)
		if err != nil {
			return nil, st.s.fail(fmt.Errorf("acquiring partitions of %q: %w", name, err))
		}
		kept := held[:0:0]
		for _, p := range held {
			if id := partitions[p.Partition]; !stdlib.SameIdentity(p.Identity, id) {
				h.t.r.mismatch(fmt.Sprintf("sink %q", st.s.st.Name), p, id)
				continue
			}
			kept = append(kept, p)
		}
		st.acquired(name, names, kept)
		for _, p := range kept {
			if old, ok := out[p.Partition]; !ok || p.Offset < old {
				out[p.Partition] = p.Offset
			}
		}
	}
	return out, nil
}
