package exec

import (
	"context"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// handoverSource emits partition p0 like a group member whose partition
// moves away and comes back: offsets 0..299, then Settle (everything
// emitted must be durable and committed at return), then Acquire, then
// offsets from 250 (an older committed offset) to 599.
type handoverSource struct {
	env  *testEnv
	h    stdlib.Handover
	next int64
	step int
	t    *testing.T
	got  map[string]int64 // what Acquire returned
}

func (s *handoverSource) Open(ctx context.Context, resume stdlib.Resumer) error {
	h, ok := resume.(stdlib.Handover)
	if !ok {
		s.t.Fatalf("resumer %T is not a Handover", resume)
	}
	s.h = h
	return nil
}

func (s *handoverSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	switch {
	case s.step == 0 && s.next == 300:
		if err := s.h.Settle(ctx); err != nil {
			return nil, err
		}
		if n := len(s.env.output("out")); n != 300 {
			s.t.Errorf("after Settle %d records are durable, want 300", n)
		}
		s.env.mu.Lock()
		if c := s.env.commits["in/p0"]; c != 299 {
			s.t.Errorf("after Settle p0 is committed at %d, want 299", c)
		}
		s.env.mu.Unlock()
		var err error
		if s.got, err = s.h.Acquire(ctx, map[string]string{"p0": ""}); err != nil {
			return nil, err
		}
		s.step, s.next = 1, 250
	case s.next == 600:
		return nil, stdlib.ErrEndOfInput
	}
	var out []stdlib.Record
	for range 50 {
		out = append(out, stdlib.Record{
			Pos:   stdlib.Position{Source: "in", Partition: "p0", Offset: s.next},
			Value: map[string]any{"id": s.next},
		})
		s.next++
	}
	return out, nil
}

func (s *handoverSource) Commit(ctx context.Context, pos []stdlib.Position) error {
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	for _, p := range pos {
		s.env.commits[p.Source+"/"+p.Partition] = p.Offset
	}
	return nil
}

func (s *handoverSource) Close(ctx context.Context) error { return nil }

// acqSink is a memSink that can acquire partitions: it holds the offset
// in held for each (another process wrote up to there).
type acqSink struct {
	*memSink
	mu    sync.Mutex
	held  int64
	calls []string
}

func (s *acqSink) Acquire(ctx context.Context, source string, partitions []string) ([]stdlib.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stdlib.Position
	for _, p := range partitions {
		s.calls = append(s.calls, source+"/"+p)
		out = append(out, stdlib.Position{Source: source, Partition: p, Offset: s.held})
	}
	return out, nil
}

func TestHandoverSettlesAndAcquires(t *testing.T) {
	env := newTestEnv(t)
	src := &handoverSource{env: env, t: t}
	snk := map[string]*acqSink{}
	for _, sp := range []*stdlib.Spec{
		{Kind: stdlib.SourceKind, Name: "moving", NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return src, nil }},
		{Kind: stdlib.SourceKind, Name: "other", Bounded: true, NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
			return &memSource{cfg: cfg, env: env}, nil
		}},
		{Kind: stdlib.SinkKind, Name: "acq", NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			s := &acqSink{memSink: &memSink{cfg: cfg, st: env.sink(cfg.Stage)}, held: 449}
			snk[cfg.Stage] = s
			return s, nil
		}},
	} {
		if err := env.reg.Register(sp); err != nil {
			t.Fatal(err)
		}
	}
	p := newPlan(time.Hour, []*plan.Stage{
		stage("in", "source", "moving", 1),
		stage("side", "source", "other", 2, attr("count", ival(10))),
		stage("out", "sink", "acq", 3),
		stage("sideout", "sink", "acq", 4),
	}, edge("in", "out"), edge("side", "sideout"))
	if err := env.run(t.Context(), p, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if src.got["p0"] != 449 {
		t.Errorf("Acquire returned %v, want p0 at 449", src.got)
	}
	if c := snk["sideout"].calls; len(c) != 0 {
		t.Errorf("a sink not downstream of the source was asked to acquire %v", c)
	}
	if c := snk["out"].calls; len(c) != 1 || c[0] != "in/p0" {
		t.Errorf("out acquired %v, want [in/p0]", c)
	}
	// Replayed records at or below what the sink holds are dropped.
	var ids []int64
	for _, r := range env.output("out") {
		ids = append(ids, r.Value.(map[string]any)["id"].(int64))
	}
	if len(ids) != 300+150 || ids[299] != 299 || ids[300] != 450 || ids[len(ids)-1] != 599 {
		t.Fatalf("out holds %d records (%v … %v), want 0..299 then 450..599", len(ids), ids[:min(3, len(ids))], ids[max(0, len(ids)-3):])
	}
	st := env.sink("out")
	st.mu.Lock()
	defer st.mu.Unlock()
	last := st.cps[len(st.cps)-1]
	if len(last.Positions) != 1 || last.Positions[0].Offset != 599 {
		t.Errorf("last checkpoint positions %v, want in/p0 at 599", last.Positions)
	}
}
