package exec

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// tickSource emits one record every 2ms, without end.
type tickSource struct{ n int64 }

func (s *tickSource) Open(context.Context, stdlib.Resumer) error { return nil }
func (s *tickSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	select {
	case <-time.After(2 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.n++
	return []stdlib.Record{{Value: map[string]any{"id": s.n}, Pos: stdlib.Position{Partition: "p", Offset: s.n}}}, nil
}
func (s *tickSource) Commit(context.Context, []stdlib.Position) error { return nil }
func (s *tickSource) Close(context.Context) error                     { return nil }

// gateSink's Checkpoint waits while down is set, as a sink whose server is
// down retries.
type gateSink struct {
	discardSink
	down *atomic.Bool
}

func (s gateSink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	for s.down.Load() {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// TestHandleHealthAndControl: a sink stuck in Checkpoint makes the run
// unhealthy (no checkpoint within the bound, the call in flight named),
// healthy again once it returns; pause holds the sources; Stop ends the
// run with nil.
func TestHandleHealthAndControl(t *testing.T) {
	var down atomic.Bool
	reg := stdlib.NewRegistry(
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "tick", NewSource: func(stdlib.Config) (stdlib.Source, error) { return &tickSource{}, nil }},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "gate", NewSink: func(stdlib.Config) (stdlib.Sink, error) { return gateSink{down: &down}, nil }},
	)
	p := newPlan(20*time.Millisecond, []*plan.Stage{stage("in", "source", "tick", 1), stage("out", "sink", "gate", 2)}, edge("in", "out"))
	h := NewHandle()
	if hl := h.Health(); hl.OK || hl.State != Starting {
		t.Fatalf("health before the run: %+v", hl)
	}
	done, state := make(chan error, 1), t.TempDir()
	go func() { done <- Run(context.Background(), p, &Config{Registry: reg, StateDir: state, Handle: h}) }()
	defer func() {
		h.Stop()
		<-done
	}()
	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("a checkpoint", 10*time.Second, func() bool { return h.Snapshot(t.Context()).Checkpoint > 0 })
	if hl := h.Health(); !hl.OK || hl.Bound != 3*time.Second {
		t.Fatalf("health while running: %+v", hl)
	}

	down.Store(true)
	waitFor("health to fail", 10*time.Second, func() bool { return !h.Health().OK && len(h.Health().Reasons) == 2 })
	hl := h.Health()
	if !strings.HasPrefix(hl.Reasons[0], "no checkpoint completed for 3") || !strings.HasPrefix(hl.Reasons[1], `sink "out" task 0: a checkpoint call has not returned for 3`) {
		t.Fatalf("reasons: %q", hl.Reasons)
	}
	down.Store(false)
	waitFor("health to recover", 10*time.Second, func() bool { return h.Health().OK })

	if err := h.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a batch in flight reaches the sink
	before := h.Snapshot(t.Context()).Stages[1].Out
	time.Sleep(100 * time.Millisecond)
	snap := h.Snapshot(t.Context())
	if after := snap.Stages[1].Out; after != before || !snap.Paused {
		t.Fatalf("paused: the sink went from %d to %d records (paused %v)", before, after, snap.Paused)
	}
	id, err := h.Checkpoint(t.Context())
	if err != nil || id == 0 {
		t.Fatalf("checkpoint while paused: %d %v", id, err)
	}
	pos := h.Positions()
	if len(pos) != 1 || pos[0].Holder != StateHolder || pos[0].Offset != before {
		t.Fatalf("positions after checkpoint %d: %+v, want the state store at %d", id, pos, before)
	}
	if err := h.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor("records after resume", 10*time.Second, func() bool { return h.Snapshot(t.Context()).Stages[1].Out > before })

	h.Stop()
	if err := <-done; err != nil {
		t.Fatalf("run after Stop: %v", err)
	}
	done <- nil
	if st, err := h.State(); st != Finished || err != nil {
		t.Fatalf("state after Stop: %s %v", st, err)
	}
	if hl := h.Health(); hl.OK || hl.Reasons[0] != "the run has ended" {
		t.Fatalf("health after the run: %+v", hl)
	}
	if err := h.Pause(); err != ErrNotRunning {
		t.Fatalf("Pause after the run: %v", err)
	}
}
