package exec

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// sinkTask runs one Sink: it drops replayed records the sink already
// holds, evaluates per-record attributes, writes batches under the stage's
// error policy and makes them durable on each barrier.
type sinkTask struct {
	r      *run
	s      *stageRT
	task   int
	sink   stdlib.Sink
	rt     *router // dead-letter output
	opened bool
	vm     vm.VM

	// stored is what the sink held when opened. held is the last position
	// per partition it holds whose identity its source confirmed (when it
	// resumed or acquired the partition): replays at or below it are
	// dropped, and dropped counts them until the next checkpoint. covers
	// grows from stored with every checkpoint. mu guards them all: sources
	// resume and acquire partitions from their own goroutines.
	mu      sync.Mutex
	stored  map[partKey]stdlib.Position
	taken   map[partKey]bool // partitions whose held position Acquire set
	held    map[partKey]int64
	covers  map[partKey]stdlib.Position
	dropped int64
	// durable is what the sink made durable at its last checkpoint (what
	// it held when opened, before).
	durable []stdlib.Position
	attrs   []*program
	// pending delivers the outcome of the checkpoint a CheckpointStarter
	// sink is finishing on another goroutine, if any.
	pending chan error
}

func newSinkTask(r *run, s *stageRT, task int, snk stdlib.Sink) (*sinkTask, error) {
	t := &sinkTask{r: r, s: s, task: task, sink: snk, stored: map[partKey]stdlib.Position{}, taken: map[partKey]bool{}, held: map[partKey]int64{}}
	if bc, ok := snk.(stdlib.ByteCounter); ok {
		s.metrics[task].sentBytes = bc.SentBytes
	}
	progs, err := stagePrograms(s, r.cfg.Now)
	if err != nil {
		return nil, err
	}
	t.attrs = progs[plan.AttrExpr]
	return t, nil
}

func (t *sinkTask) run(ctx context.Context) (err error) {
	defer t.s.closeInto(ctx, &err, t.sink.Close)
	defer func() { // a checkpoint finishing ends before Close
		if perr := t.settle(); err == nil && perr != nil {
			err = perr
		}
	}()
	defer t.s.recoverPanic(&err)
	t.rt = newRouter(t.r, t.s, t.task)
	return t.r.receive(ctx, t.s.inboxes[t.task], t)
}

func (t *sinkTask) batch(ctx context.Context, b []stdlib.Record) error {
	start := time.Now()
	defer t.rt.m.batch.since(start)
	t.rt.m.received.Add(int64(len(b)))
	if !t.s.spec.ReadsRows || len(t.attrs) > 0 { // the sink, or its := attributes, read maps
		stdlib.MaterializeBatch(b)
	}
	t.mu.Lock()
	if len(t.held) > 0 {
		n := 0
		for i := range b {
			if off, ok := t.held[partKey{b[i].Pos.Source, b[i].Pos.Partition}]; ok && b[i].Pos.Offset <= off {
				continue
			}
			b[n] = b[i]
			n++
		}
		t.dropped += int64(len(b) - n)
		t.rt.m.replays.Add(int64(len(b) - n))
		clear(b[n:])
		b = b[:n]
	}
	t.mu.Unlock()
	if len(t.attrs) > 0 {
		// One array holds the values of the whole batch.
		k := len(t.attrs)
		vals := make([]any, len(b)*k)
		n := 0
		for i := range b {
			rec := &b[i]
			rec.Attrs = vals[i*k : (i+1)*k : (i+1)*k]
			at, err := t.setAttrs(rec)
			if err != nil {
				if err := t.r.failure(ctx, t.s, t.rt, EvaluateError, t.s.policy, rec, at, err, nil); err != nil {
					return err
				}
				continue
			}
			b[n] = *rec
			n++
		}
		b = b[:n]
	}
	if len(b) == 0 {
		return nil
	}
	return t.write(ctx, b)
}

// setAttrs evaluates the sink's := attributes into rec.Attrs, in the
// order of stdlib.Config.Exprs.
func (t *sinkTask) setAttrs(rec *stdlib.Record) (string, error) {
	for i, p := range t.attrs {
		v, err := p.eval(&t.vm, rec)
		if err != nil {
			return errAt(err, p.at), err
		}
		rec.Attrs[i] = v
	}
	return "", nil
}

// write hands b to the sink under the stage's error policy: rejected
// records go through the policy one by one; a failed batch is retried as a
// whole when the policy says retry, then falls back.
func (t *sinkTask) write(ctx context.Context, b []stdlib.Record) error {
	pol := t.s.policy
	m := t.rt.m
	err := t.sinkWrite(ctx, b)
	if err != nil && !isRecordErrors(err) && pol != nil && pol.Action == stdlib.ActionRetry {
		for i := 0; i < pol.Max && err != nil && !isRecordErrors(err); i++ {
			t.r.noteError(t.s, WriteError, t.s.at, nil, err)
			if serr := sleepCtx(ctx, backoff(pol.Backoff, i)); serr != nil {
				return serr
			}
			m.retries.Add(1)
			err = t.sinkWrite(ctx, b)
		}
		if err != nil && !isRecordErrors(err) {
			t.s.log(t.r, "retries exhausted", t.s.at, err)
			pol = pol.Then
		}
	}
	if err == nil {
		m.sent.Add(int64(len(b)))
		if t.s.release {
			t.r.recycler.PutBatch(b)
		}
		return nil
	}
	var res stdlib.RecordErrors
	if errors.As(err, &res) {
		m.sent.Add(int64(len(b) - len(res)))
		for _, re := range res {
			if re.Index < 0 || re.Index >= len(b) {
				return t.s.fail(fmt.Errorf("sink rejected record %d of a batch of %d", re.Index, len(b)))
			}
			rec := b[re.Index]
			if err := t.r.failure(ctx, t.s, t.rt, WriteError, t.s.policy, &rec, t.s.at, re.Err, func() (bool, error) {
				err := t.sinkWrite(ctx, []stdlib.Record{rec})
				if err == nil {
					m.sent.Add(1)
				}
				return err == nil, err
			}); err != nil {
				return err
			}
		}
		return nil
	}
	// The whole batch failed and retries (if any) ran out: the fallback
	// applies to each record.
	if pol == nil || pol.Action == stdlib.ActionFail || pol.Action == stdlib.ActionRetry {
		m.errors[WriteError].Add(int64(len(b)))
		return t.s.fail(err)
	}
	for i := range b {
		if err := t.r.failure(ctx, t.s, t.rt, WriteError, pol, &b[i], t.s.at, err, nil); err != nil {
			return err
		}
	}
	return nil
}

// sinkWrite calls the sink's Write, timed.
func (t *sinkTask) sinkWrite(ctx context.Context, b []stdlib.Record) error {
	m := t.rt.m
	defer m.end(&m.write, m.begin(opWrite))
	return t.sink.Write(ctx, b)
}

// sinkCheckpoint calls the sink's Checkpoint, or finish when not nil,
// timed; a failure is counted.
func (t *sinkTask) sinkCheckpoint(ctx context.Context, cp stdlib.Checkpoint, finish func(context.Context) error) error {
	m := t.rt.m
	defer m.end(&m.checkpoint, m.begin(opCheckpoint))
	var err error
	if finish != nil {
		err = finish(ctx)
	} else {
		err = t.sink.Checkpoint(ctx, cp)
	}
	if err == nil {
		m.durableAt.Store(time.Now().UnixNano())
	} else {
		t.checkpointFailed(cp, err)
	}
	return err
}

// checkpointFailed counts a failed attempt at the checkpoint cp.
func (t *sinkTask) checkpointFailed(cp stdlib.Checkpoint, err error) {
	t.rt.m.errors[CheckpointError].Add(1)
	t.r.cpFailed.Add(1)
	t.r.noteError(t.s, CheckpointError, t.s.at, nil, fmt.Errorf("checkpoint %d: %w", cp.ID, err))
}

func isRecordErrors(err error) bool {
	var res stdlib.RecordErrors
	return errors.As(err, &res)
}

// barrier forwards the barrier to the dead-letter sink, then makes the
// sink's output durable with the barrier's positions and acknowledges.
func (t *sinkTask) barrier(ctx context.Context, b *barrier) error {
	if len(t.rt.dests) > 0 {
		if err := t.rt.control(ctx, message{barrier: b}); err != nil {
			return err
		}
	}
	// A sink's positions only grow: a checkpoint covers what the task
	// held before (partitions not read since the restart, or resumed
	// lower for another sink's sake) as well as the barrier's positions.
	// A position of another incarnation of a partition replaces it.
	t.mu.Lock()
	if t.covers == nil {
		t.covers = maps.Clone(t.stored)
	}
	for _, p := range b.pos {
		k := partKey{p.Source, p.Partition}
		if c, ok := t.covers[k]; !ok || p.Offset > c.Offset || p.Identity != c.Identity {
			t.covers[k] = p
		}
	}
	cp := stdlib.Checkpoint{ID: b.id, Positions: slices.Collect(maps.Values(t.covers))}
	dropped, held := t.dropped, ""
	if dropped > 0 {
		held = heldSummary(t.held)
	}
	t.dropped = 0
	t.mu.Unlock()
	if dropped > 0 {
		t.r.cfg.Logger.Info("dropped replayed records the sink already holds",
			"stage", t.s.st.Name, "task", t.task, "records", dropped,
			"why", "at or below the positions it made durable before (pipe offsets show/reset)",
			"held", held)
	}
	sortPositions(cp.Positions)
	if err := t.settle(); err != nil {
		return err
	}
	cs, ok := t.sink.(stdlib.CheckpointStarter)
	if !ok {
		return t.complete(ctx, cp, nil)
	}
	finish, err := cs.StartCheckpoint(ctx, cp)
	if err != nil {
		t.checkpointFailed(cp, err)
		if pol := t.s.policy; pol != nil && pol.Action == stdlib.ActionRetry {
			return t.complete(ctx, cp, nil) // by Checkpoint, retried
		}
		return t.s.fail(fmt.Errorf("checkpoint %d: %w", b.id, err))
	}
	if finish == nil { // durable already
		t.rt.m.durableAt.Store(time.Now().UnixNano())
		return t.acknowledge(cp)
	}
	// The sink makes the checkpoint durable while this task goes on
	// writing what follows the barrier; the next barrier, the end of the
	// run and Close wait for it.
	done := make(chan error, 1)
	t.pending = done
	go func() {
		err := t.complete(ctx, cp, finish)
		if err != nil && !errors.Is(err, errStopped) {
			t.r.fail(err) // the run stops even if this task waits for input
		}
		done <- err
	}()
	return nil
}

// complete makes the checkpoint cp durable, by the sink's Checkpoint or by
// finish when not nil, retried as the stage's policy says, then
// acknowledges it.
func (t *sinkTask) complete(ctx context.Context, cp stdlib.Checkpoint, finish func(context.Context) error) error {
	err := t.sinkCheckpoint(ctx, cp, finish)
	if pol := t.s.policy; err != nil && pol != nil && pol.Action == stdlib.ActionRetry {
		for i := 0; i < pol.Max && err != nil; i++ {
			if serr := sleepCtx(ctx, backoff(pol.Backoff, i)); serr != nil {
				return serr
			}
			t.rt.m.retries.Add(1)
			err = t.sinkCheckpoint(ctx, cp, finish)
		}
	}
	if err != nil {
		return t.s.fail(fmt.Errorf("checkpoint %d: %w", cp.ID, err))
	}
	return t.acknowledge(cp)
}

// acknowledge tells the coordinator that the checkpoint cp is durable.
func (t *sinkTask) acknowledge(cp stdlib.Checkpoint) error {
	t.mu.Lock()
	t.durable = cp.Positions
	t.mu.Unlock()
	return t.r.control(ctrlMsg{kind: ctrlAck, id: cp.ID})
}

// settle waits for the checkpoint the sink is finishing, if any, and
// returns its error.
func (t *sinkTask) settle() error {
	if t.pending == nil {
		return nil
	}
	err := <-t.pending
	t.pending = nil
	return err
}

func (t *sinkTask) end(ctx context.Context) error {
	if len(t.rt.dests) > 0 {
		return t.rt.control(ctx, message{eos: true})
	}
	return nil
}

func sortPositions(ps []stdlib.Position) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Source != ps[j].Source {
			return ps[i].Source < ps[j].Source
		}
		return ps[i].Partition < ps[j].Partition
	})
}

// acquired records what the sink holds for partitions of source just
// taken over: replayed records at or below it are dropped, and the
// positions it checkpoints start from it again (what this task covered
// before the partition moved away is no longer its to claim).
func (t *sinkTask) acquired(source string, partitions []string, held []stdlib.Position) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.covers == nil {
		t.covers = maps.Clone(t.stored)
	}
	for _, p := range partitions {
		k := partKey{source, p}
		delete(t.held, k)
		delete(t.covers, k)
		t.taken[k] = true
	}
	for _, p := range held {
		k := partKey{source, p.Partition}
		t.held[k] = p.Offset
		t.covers[k] = p
	}
}

// confirm is called when a source resumes partition k with identity: the
// position the sink stored for it, if of that identity, starts dropping
// replays and is returned; one of another identity is reported and left
// out (the partition's records are written again). A partition acquired
// before keeps what Acquire set (acquired is then true).
func (t *sinkTask) confirm(k partKey, identity string) (held int64, ok, acquired bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.taken[k] {
		held, ok = t.held[k]
		return held, ok, true
	}
	p, ok := t.stored[k]
	if !ok {
		return 0, false, false
	}
	if !stdlib.SameIdentity(p.Identity, identity) {
		t.r.mismatch(fmt.Sprintf("sink %q", t.s.st.Name), p, identity)
		return 0, false, false
	}
	t.held[k] = p.Offset
	return p.Offset, true, false
}

// heldSummary names the first few held positions for a log line.
func heldSummary(held map[partKey]int64) string {
	keys := slices.SortedFunc(maps.Keys(held), func(a, b partKey) int {
		return cmp.Or(strings.Compare(a.source, b.source), strings.Compare(a.partition, b.partition))
	})
	var b strings.Builder
	for i, k := range keys {
		if i == 3 {
			fmt.Fprintf(&b, " and %d more", len(keys)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s[%s]@%d", k.source, k.partition, held[k])
	}
	return b.String()
}
