package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
)

// defaultCheckpoint is the checkpoint interval when the plan sets none.
const defaultCheckpoint = 10 * time.Second

// run is one execution of a plan.
type run struct {
	p      *plan.Plan
	cfg    Config
	stages []*stageRT
	store  state.Backend
	prev   *state.Checkpoint
	// recycler passes batches done with back to the sources.
	recycler *stdlib.Recycler

	// ictx is cancelled when the run fails; rctx (sources' Read) also
	// when the caller's context is.
	ictx    context.Context
	icancel context.CancelFunc
	rctx    context.Context
	rcancel context.CancelFunc

	errMu sync.Mutex
	err   error

	ctrl      chan ctrlMsg
	sources   []*sourceTask
	sinks     []*sinkTask
	finished  chan struct{} // closed when the final checkpoint completed
	lastCP    atomic.Uint64
	startTime time.Time

	// cpReq asks the coordinator for a checkpoint now; it answers with
	// the id of a checkpoint that starts after the request.
	cpReq chan chan uint64
	// cpWake is closed and replaced whenever a checkpoint completes.
	cpMu   sync.Mutex
	cpWake chan struct{}

	// warned holds the stored positions already reported as pointing
	// into another incarnation of their partition.
	warnMu sync.Mutex
	warned map[string]bool

	// paused, when set, holds the channel Resume closes.
	paused atomic.Pointer[chan struct{}]
	// Checkpoints of this run: completed and failed attempts, durations,
	// when the last one completed (unix ns), and its positions (pubCP).
	cpCount    atomic.Uint64
	cpFailed   atomic.Uint64
	cpDur      histogram
	lastCPTime atomic.Int64
	pubMu      sync.Mutex
	pubCP      state.Checkpoint
	// lags holds what each source reporting lag said last.
	lagMu sync.Mutex
	lags  map[*sourceTask][]stdlib.Lag
}

type ctrlKind int

const (
	ctrlDone   ctrlKind = iota // a source task is exhausted or stopped
	ctrlReport                 // a source task injected a barrier
	ctrlAck                    // a sink task made a checkpoint durable
)

type ctrlMsg struct {
	kind ctrlKind
	id   uint64
	src  *sourceTask
	pos  []stdlib.Position
}

// Run executes p until every source is exhausted and its output committed,
// or until ctx is cancelled: then sources stop reading, in-flight batches
// drain, a final checkpoint completes and Run returns nil. It returns an
// error when a stage fails (policy fail) or a component cannot be opened.
func Run(ctx context.Context, p *plan.Plan, cfg *Config) (err error) {
	if p == nil {
		return errors.New("nil plan")
	}
	r := &run{
		p: p, cfg: cfg.withDefaults(p), startTime: time.Now(),
		finished: make(chan struct{}), cpReq: make(chan chan uint64), cpWake: make(chan struct{}),
	}
	h := r.cfg.Handle
	defer func() {
		err = r.cfg.Redactor.Error(err)
		if err != nil {
			h.setState(Failed, err)
		} else {
			h.setState(Finished, nil)
		}
	}()
	r.recycler = stdlib.NewRecycler(r.cfg.BatchSize)
	// Parameters are resolved first, so that the redactor knows their
	// values before anything can print one.
	params, err := resolveParams(p.Params, r.cfg.Secrets)
	if err != nil {
		return err
	}
	r.stages, err = buildGraph(p, r.cfg.Registry, r.cfg.ChannelDepth, r.cfg.Now, params)
	if err != nil {
		return err
	}
	if r.store, err = r.cfg.openState(); err != nil {
		return err
	}
	defer r.store.Close()
	if r.prev, err = r.store.Load(); err != nil {
		return err
	}
	if r.prev != nil {
		r.pubCP = *r.prev
	}
	if lim := r.cfg.MemoryLimit; lim > 0 && os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		oldLimit := debug.SetMemoryLimit(goMemoryLimit(lim, fileResident()))
		oldGC := debug.SetGCPercent(400)
		defer func() {
			debug.SetGCPercent(oldGC)
			debug.SetMemoryLimit(oldLimit)
		}()
	}
	r.ictx, r.icancel = context.WithCancel(context.WithoutCancel(ctx))
	defer r.icancel()
	r.rctx, r.rcancel = context.WithCancel(ctx)
	defer r.rcancel()
	if h != nil {
		h.attach(r)
	}
	transforms, err := r.open(ctx)
	if err != nil {
		r.closeAll()
		return err
	}
	r.ctrl = make(chan ctrlMsg, len(r.sources)+len(r.sinks)+1)

	var wg sync.WaitGroup
	for _, t := range r.sinks {
		wg.Go(func() { r.task(t.run) })
	}
	for _, t := range transforms {
		if t.s.chained {
			t.start() // its upstream task calls it
			continue
		}
		wg.Go(func() { r.task(t.run) })
	}
	for _, t := range r.sources {
		wg.Go(func() { r.task(t.run) })
		wg.Go(func() { r.task(t.read) })
	}
	var aux sync.WaitGroup
	aux.Go(r.coordinate)
	statusDone := make(chan struct{})
	if r.cfg.Status != nil {
		aux.Go(func() { r.status(statusDone) })
	}
	if h != nil {
		h.setState(Running, nil)
		aux.Go(func() { h.sampleRates(r, statusDone) })
		aux.Go(func() {
			select {
			case <-r.rctx.Done():
				h.setState(Stopping, nil)
			case <-statusDone:
			}
		})
	}
	wg.Wait()
	// The lag where the sources stopped, for the snapshots after the run.
	final := r.snapshot()
	if h != nil || r.cfg.Status != nil {
		r.addLag(context.WithoutCancel(ctx), &final, true)
	}
	r.icancel()
	close(statusDone)
	aux.Wait()
	if r.cfg.Status != nil {
		// The last snapshot gives the run's average rates.
		snap := r.snapshot()
		r.addLag(r.ictx, &snap, false)
		r.redact(&snap)
		if el := snap.Elapsed.Seconds(); el > 0 {
			for i := range snap.Stages {
				snap.Stages[i].Rate = float64(snap.Stages[i].Out) / el
			}
		}
		r.cfg.Status(snap)
	}
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

// task runs a task body and records its error.
func (r *run) task(body func(ctx context.Context) error) {
	err := body(r.ictx)
	if err != nil && !errors.Is(err, errStopped) {
		r.fail(err)
	}
}

// fail records the first error and stops the run.
func (r *run) fail(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
	r.icancel()
	r.rcancel()
}

// send puts m on ch unless the run is stopping.
func (r *run) send(ctx context.Context, ch chan message, m message) error {
	select {
	case ch <- m:
		return nil
	case <-ctx.Done():
		return errStopped
	}
}

func (r *run) control(m ctrlMsg) error {
	select {
	case r.ctrl <- m:
		return nil
	case <-r.ictx.Done():
		return errStopped
	}
}

// open builds every component, opens the sinks, computes where each source
// partition resumes and opens the sources.
func (r *run) open(ctx context.Context) ([]*transformTask, error) {
	var transforms []*transformTask
	// Every secret is resolved before any component is built, so that the
	// redactor knows them all before a logger or an error can carry one.
	attrs := make([]map[string]any, len(r.stages))
	exprs := make([][]string, len(r.stages))
	for i, s := range r.stages {
		a, err := configAttrs(s.st, s.spec, r.cfg.Secrets)
		if err != nil {
			return nil, err
		}
		attrs[i] = a
		for _, e := range s.st.Exprs {
			if e.Kind == plan.AttrExpr {
				exprs[i] = append(exprs[i], e.Target)
			}
		}
	}
	for si, s := range r.stages {
		for i := 0; i < s.st.Tasks; i++ {
			cfg := stdlib.Config{
				Pipeline: r.p.Pipeline, Stage: s.st.Name, Attrs: attrs[si],
				Schema: s.st.Schema, Input: s.st.Input, Delivery: stdlib.Delivery(s.st.Delivery),
				Task: i, Tasks: s.st.Tasks, StateDir: r.cfg.StateDir,
				Instance: r.cfg.Instance, Owner: r.cfg.Owner,
				Logger:   r.cfg.Logger.With("stage", s.st.Name, "task", i),
				Recycler: r.recycler,
				Rows:     s.isSource(), // stages materialize rows on entry
				Exprs:    exprs[si],
			}
			switch {
			case s.isSource():
				src, err := s.spec.NewSource(cfg)
				if err != nil {
					return nil, fmt.Errorf("%s: stage %q: %w", s.at, s.st.Name, err)
				}
				r.sources = append(r.sources, newSourceTask(r, s, i, src))
			case s.isSink():
				snk, err := s.spec.NewSink(cfg)
				if err != nil {
					return nil, fmt.Errorf("%s: stage %q: %w", s.at, s.st.Name, err)
				}
				t, err := newSinkTask(r, s, i, snk)
				if err != nil {
					return nil, err
				}
				r.sinks = append(r.sinks, t)
				h, err := snk.Open(ctx)
				if err != nil {
					return nil, fmt.Errorf("%s: stage %q: opening: %w", s.at, s.st.Name, err)
				}
				t.opened = true
				for _, p := range h {
					t.stored[partKey{p.Source, p.Partition}] = p
				}
				t.durable = h
			default:
				t, err := newTransformTask(r, s, i, cfg)
				if err != nil {
					return nil, err
				}
				transforms = append(transforms, t)
				if s.chained {
					s.tasks = append(s.tasks, t)
				}
			}
		}
	}
	// Each partition resumes when its source asks (handover.Resume), so
	// that the identity of what it reads is checked first.
	for _, t := range r.sources {
		if r.prev != nil {
			for _, p := range r.prev.Positions {
				if p.Source == t.s.st.Name {
					t.committed[partKey{p.Source, p.Partition}] = p
				}
			}
		}
		t.resume = &handover{t: t}
		if err := t.src.Open(ctx, t.resume); err != nil {
			return nil, fmt.Errorf("%s: stage %q: opening: %w", t.s.at, t.s.st.Name, err)
		}
		t.opened = true
		r.cfg.Logger.Debug("source opened", "stage", t.s.st.Name, "task", t.task)
	}
	return transforms, nil
}

// mismatch reports, once, that a position held by holder is not applied
// because its partition now has another identity.
func (r *run) mismatch(holder string, p stdlib.Position, current string) {
	if stdlib.IsSessionIdentity(current) {
		return // a partition that never resumes: nothing held applies, as expected
	}
	key := holder + "\x00" + p.Source + "\x00" + p.Partition
	r.warnMu.Lock()
	seen := r.warned[key]
	if r.warned == nil {
		r.warned = map[string]bool{}
	}
	r.warned[key] = true
	r.warnMu.Unlock()
	if seen {
		return
	}
	r.cfg.Logger.Warn("stored position not applied: the partition is not what it pointed into",
		"stage", p.Source, "partition", p.Partition, "held_by", holder, "offset", p.Offset,
		"stored_identity", p.Identity, "identity", current,
		"then", "the partition starts as the source's start says and its records are written again")
}

// closeAll closes components opened before a failed start.
func (r *run) closeAll() {
	ctx := context.WithoutCancel(r.ictx)
	for _, t := range r.sources {
		if t.opened {
			t.src.Close(ctx)
		}
	}
	for _, t := range r.sinks {
		if t.opened {
			t.sink.Close(ctx)
		}
	}
}

// status reports snapshots until done is closed.
func (r *run) status(done chan struct{}) {
	t := time.NewTicker(r.cfg.StatusInterval)
	defer t.Stop()
	prev := make([]int64, len(r.stages))
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			snap := r.snapshot()
			r.addLag(r.ictx, &snap, true)
			r.redact(&snap)
			el := now.Sub(last).Seconds()
			last = now
			for i := range snap.Stages {
				if el > 0 {
					snap.Stages[i].Rate = float64(snap.Stages[i].Out-prev[i]) / el
				}
				prev[i] = snap.Stages[i].Out
			}
			r.cfg.Status(snap)
		}
	}
}

func (r *run) snapshot() Snapshot {
	now := time.Now()
	snap := Snapshot{
		Time: r.cfg.Now(), Elapsed: now.Sub(r.startTime), Checkpoint: r.lastCP.Load(),
		Paused: r.paused.Load() != nil,
		Checkpoints: CheckpointStats{
			Completed: r.cpCount.Load(), Failed: r.cpFailed.Load(), Duration: r.cpDur.snapshot(),
			Interval: time.Duration(r.p.Checkpoint),
		},
	}
	if snap.Checkpoints.Interval <= 0 {
		snap.Checkpoints.Interval = defaultCheckpoint
	}
	if ns := r.lastCPTime.Load(); ns != 0 {
		snap.CheckpointTime = time.Unix(0, ns)
		snap.CheckpointAge = now.Sub(snap.CheckpointTime)
	}
	r.pubMu.Lock()
	committed := map[partKey]int64{}
	for _, p := range r.pubCP.Positions {
		committed[partKey{p.Source, p.Partition}] = p.Offset
	}
	r.pubMu.Unlock()
	for _, s := range r.stages {
		st := StageStatus{Name: s.st.Name, Kind: s.st.Kind, Component: s.st.Component, Tasks: s.st.Tasks, LastError: s.lastErr.get()}
		for i, m := range s.metrics {
			ts := m.snapshot(i, s.isSink(), now)
			st.In += ts.Received
			st.Out += ts.Sent
			st.DeadLettered += ts.DeadLettered
			st.Skipped += ts.Skipped
			st.Retries += ts.Retries
			for _, n := range ts.Errors {
				st.Errors += n
			}
			st.TaskStats = append(st.TaskStats, ts)
		}
		st.CheckpointAge = snap.CheckpointAge
		if s.isSink() {
			st.CheckpointAge = 0
			for _, ts := range st.TaskStats {
				if ts.LastCheckpoint.IsZero() {
					st.CheckpointAge = 0
					break
				}
				st.CheckpointAge = max(st.CheckpointAge, now.Sub(ts.LastCheckpoint))
			}
		}
		snap.Stages = append(snap.Stages, st)
	}
	for _, t := range r.sources {
		st := &snap.Stages[t.s.idx]
		for k, off := range t.positions() {
			ps := PartitionStatus{Partition: k.partition, Task: t.task, Offset: off, Committed: -1}
			if c, ok := committed[k]; ok {
				ps.Committed = c
			}
			st.Partitions = append(st.Partitions, ps)
		}
	}
	return snap
}

// awaitCheckpoint asks for a checkpoint to start now and waits until it
// completed.
func (r *run) awaitCheckpoint(ctx context.Context) error {
	reply := make(chan uint64, 1)
	select {
	case r.cpReq <- reply:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ictx.Done():
		return errStopped
	}
	var id uint64
	select {
	case id = <-reply:
	case <-r.ictx.Done():
		return errStopped
	}
	for {
		r.cpMu.Lock()
		wake := r.cpWake
		r.cpMu.Unlock()
		if r.lastCP.Load() >= id {
			return nil
		}
		select {
		case <-wake:
		case <-r.finished:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ictx.Done():
			return errStopped
		}
	}
}
