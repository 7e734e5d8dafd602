package exec

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// RunState is where a run is in its life.
type RunState string

const (
	Starting RunState = "starting" // components are being opened
	Running  RunState = "running"
	Stopping RunState = "stopping" // draining towards a final checkpoint
	Finished RunState = "finished" // Run returned nil
	Failed   RunState = "failed"   // Run returned an error
)

// ErrNotRunning is returned by Handle's control methods when no run is in
// progress.
var ErrNotRunning = errors.New("the pipeline is not running")

// Handle reaches a run from other goroutines while it lasts: its state,
// counters, positions and health, and control (pause, resume, checkpoint,
// stop). Pass one in [Config.Handle]; its methods are safe for concurrent
// use and work before the run starts and after it ended.
type Handle struct {
	mu     sync.Mutex
	r      *run
	state  RunState
	err    error
	stop   bool // Stop was called before the run attached
	opened time.Time
	rates  []float64 // per stage, records out per second over the last second
}

// NewHandle returns a handle for one run.
func NewHandle() *Handle { return &Handle{state: Starting} }

func (h *Handle) attach(r *run) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.r = r
	h.rates = make([]float64, len(r.stages))
	if h.stop {
		r.rcancel()
	}
}

func (h *Handle) setState(s RunState, err error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == Failed || (h.state == Finished && s != Failed) {
		return
	}
	if s == Running {
		h.opened = time.Now()
	}
	h.state, h.err = s, err
}

// State returns the run's state and, when it failed, its error (secrets
// redacted).
func (h *Handle) State() (RunState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.err
}

func (h *Handle) running() (*run, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.r == nil || (h.state != Running && h.state != Stopping) {
		return nil, ErrNotRunning
	}
	return h.r, nil
}

// Pause stops the sources reading once their Read in progress returns;
// records already read go on, and checkpoints go on completing.
func (h *Handle) Pause() error {
	r, err := h.running()
	if err != nil {
		return err
	}
	gate := make(chan struct{})
	r.paused.CompareAndSwap(nil, &gate)
	return nil
}

// Resume lets paused sources read again.
func (h *Handle) Resume() error {
	r, err := h.running()
	if err != nil {
		return err
	}
	if g := r.paused.Swap(nil); g != nil {
		close(*g)
	}
	return nil
}

// Checkpoint starts a checkpoint and waits until it completed; it returns
// its id.
func (h *Handle) Checkpoint(ctx context.Context) (uint64, error) {
	r, err := h.running()
	if err != nil {
		return 0, err
	}
	if err := r.awaitCheckpoint(ctx); err != nil {
		if errors.Is(err, errStopped) {
			return 0, ErrNotRunning
		}
		return 0, err
	}
	return r.lastCP.Load(), nil
}

// Stop makes the run stop reading, drain, take a final checkpoint and
// return nil, as when Run's context is cancelled.
func (h *Handle) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.r == nil {
		h.stop = true
		return
	}
	if h.state == Running {
		h.state = Stopping
	}
	h.r.rcancel()
}

// Snapshot returns the run's counters, with the lag of every source that
// reports it (ctx bounds asking them).
func (h *Handle) Snapshot(ctx context.Context) Snapshot {
	h.mu.Lock()
	r, state := h.r, h.state
	h.mu.Unlock()
	if r == nil || state == Starting {
		// The components are being opened: nothing moved yet.
		snap := Snapshot{Time: time.Now(), State: state}
		if r != nil {
			for _, s := range r.stages {
				snap.Stages = append(snap.Stages, StageStatus{Name: s.st.Name, Kind: s.st.Kind, Component: s.st.Component, Tasks: s.st.Tasks})
			}
		}
		return snap
	}
	snap := r.snapshot()
	snap.State = state
	r.addLag(ctx, &snap, state == Running || state == Stopping)
	h.mu.Lock()
	for i := range snap.Stages {
		if i < len(h.rates) {
			snap.Stages[i].Rate = h.rates[i]
		}
	}
	h.mu.Unlock()
	r.redact(&snap)
	return snap
}

// redact replaces every secret value in the partition names of snap (a
// file path may hold one) by its reference.
func (r *run) redact(snap *Snapshot) {
	for i := range snap.Stages {
		for j := range snap.Stages[i].Partitions {
			p := &snap.Stages[i].Partitions[j]
			p.Partition = r.cfg.Redactor.Redact(p.Partition)
		}
	}
}

// addLag adds to snap the lag of every source that reports it: asked now
// when ask is set (the sources are open), else as last asked.
func (r *run) addLag(ctx context.Context, snap *Snapshot, ask bool) {
	if ask {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		got := map[*sourceTask][]stdlib.Lag{}
		for _, t := range r.sources {
			if l, ok := t.src.(stdlib.Lagger); ok && t.opened {
				got[t] = l.Lag(ctx)
			}
		}
		r.lagMu.Lock()
		if r.lags == nil {
			r.lags = map[*sourceTask][]stdlib.Lag{}
		}
		maps.Copy(r.lags, got)
		r.lagMu.Unlock()
	}
	r.lagMu.Lock()
	defer r.lagMu.Unlock()
	for _, t := range r.sources {
		ps := snap.Stages[t.s.idx].Partitions
		for _, l := range r.lags[t] {
			j := slices.IndexFunc(ps, func(p PartitionStatus) bool { return p.Partition == l.Partition && p.Task == t.task })
			if j < 0 {
				ps = append(ps, PartitionStatus{Partition: l.Partition, Task: t.task, Offset: -1, Committed: -1})
				j = len(ps) - 1
			}
			ps[j].Lag, ps[j].LagUnit, ps[j].HasLag = l.Behind, l.Unit, true
		}
		snap.Stages[t.s.idx].Partitions = ps
	}
	for i := range snap.Stages {
		sortPartitions(snap.Stages[i].Partitions)
	}
}

// sampleRates computes each stage's rate every second until done closes.
func (h *Handle) sampleRates(r *run, done chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := r.snapshot()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			cur := r.snapshot()
			el := cur.Time.Sub(prev.Time).Seconds()
			h.mu.Lock()
			for i := range cur.Stages {
				if el > 0 {
					h.rates[i] = float64(cur.Stages[i].Out-prev.Stages[i].Out) / el
				}
			}
			h.mu.Unlock()
			prev = cur
		}
	}
}

// Health says whether the run is healthy: every task runs and a
// checkpoint completed within HealthBound (since the run started, before
// the first one), and no sink call has been in flight longer than that.
type Health struct {
	OK      bool     `json:"ok"`
	State   RunState `json:"state"`
	Reasons []string `json:"reasons,omitempty"`
	// CheckpointAge is the time since the last checkpoint completed (or
	// since the run started); Bound the most it may be.
	CheckpointAge time.Duration `json:"checkpoint_age_ns"`
	Bound         time.Duration `json:"bound_ns"`
}

// HealthBound is the oldest the last completed checkpoint may be for a
// healthy run with checkpoint interval every: three intervals, at least 3s.
func HealthBound(every time.Duration) time.Duration {
	if every <= 0 {
		every = defaultCheckpoint
	}
	return max(3*every, 3*time.Second)
}

// Health reports the run's health.
func (h *Handle) Health() Health {
	h.mu.Lock()
	r, state, err, opened := h.r, h.state, h.err, h.opened
	h.mu.Unlock()
	out := Health{State: state}
	switch state {
	case Starting:
		out.Reasons = []string{"starting: opening the sources and sinks"}
		return out
	case Finished:
		out.Reasons = []string{"the run has ended"}
		return out
	case Failed:
		out.Reasons = []string{fmt.Sprintf("the run failed: %v", err)}
		return out
	}
	now := time.Now()
	out.Bound = HealthBound(time.Duration(r.p.Checkpoint))
	last := opened
	if ns := r.lastCPTime.Load(); ns != 0 {
		last = time.Unix(0, ns)
	}
	out.CheckpointAge = now.Sub(last)
	if out.CheckpointAge > out.Bound {
		last := fmt.Sprintf("the last was checkpoint %d", r.lastCP.Load())
		if r.cpCount.Load() == 0 {
			last = "none since the run started"
		}
		out.Reasons = append(out.Reasons, fmt.Sprintf("no checkpoint completed for %s (the bound is %s; %s)",
			out.CheckpointAge.Round(100*time.Millisecond), out.Bound, last))
	}
	for _, t := range r.sinks {
		ts := t.s.metrics[t.task].snapshot(t.task, true, now)
		if ts.Busy > out.Bound {
			msg := fmt.Sprintf("sink %q task %d: a %s call has not returned for %s", t.s.st.Name, t.task, ts.BusyOp, ts.Busy.Round(100*time.Millisecond))
			if e := t.s.lastErr.get(); e != nil && now.Sub(e.Time) < ts.Busy {
				msg += "; last error: " + e.Message
			}
			out.Reasons = append(out.Reasons, msg)
		}
	}
	out.OK = len(out.Reasons) == 0
	return out
}

// Positions returns what the run holds: the positions of the last
// completed checkpoint (holder StateHolder) and those every sink keeping
// positions of its own made durable, as [Offsets.Positions] orders them.
// Before the first checkpoint of the run they are what it resumed from.
func (h *Handle) Positions() []HeldPosition {
	h.mu.Lock()
	r, state := h.r, h.state
	h.mu.Unlock()
	if r == nil {
		return nil
	}
	var out []HeldPosition
	r.pubMu.Lock()
	for _, p := range r.pubCP.Positions {
		out = append(out, HeldPosition{Holder: StateHolder, Position: p, Time: r.pubCP.Time})
	}
	r.pubMu.Unlock()
	type key struct{ holder, source, partition string }
	best := map[key]HeldPosition{}
	if state == Starting {
		return out // the sinks are being opened
	}
	for _, t := range r.sinks {
		if _, ok := t.sink.(stdlib.PositionStore); !ok {
			continue
		}
		t.mu.Lock()
		for _, p := range t.durable {
			k := key{t.s.st.Name, p.Source, p.Partition}
			if old, ok := best[k]; !ok || p.Offset > old.Offset {
				best[k] = HeldPosition{Holder: t.s.st.Name, Component: t.s.st.Component, Position: p}
			}
		}
		t.mu.Unlock()
	}
	out = append(out, slices.Collect(maps.Values(best))...)
	for i := range out {
		out[i].Partition = r.cfg.Redactor.Redact(out[i].Partition)
		out[i].Identity = r.cfg.Redactor.Redact(out[i].Identity)
	}
	sortHeld(out)
	return out
}

// Plan returns the plan being run (nil before Run attached the handle).
func (h *Handle) Plan() *plan.Plan {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.r == nil {
		return nil
	}
	return h.r.p
}

func sortHeld(out []HeldPosition) {
	slices.SortStableFunc(out, func(a, b HeldPosition) int {
		return cmp.Or(
			strings.Compare(a.Source, b.Source),
			strings.Compare(a.Partition, b.Partition),
			cmp.Compare(holderRank(a.Holder), holderRank(b.Holder)),
			strings.Compare(a.Holder, b.Holder),
			instanceCompare(a.Instance, b.Instance))
	})
}

func sortPartitions(ps []PartitionStatus) {
	slices.SortFunc(ps, func(a, b PartitionStatus) int {
		return cmp.Or(cmp.Compare(a.Task, b.Task), strings.Compare(a.Partition, b.Partition))
	})
}
