package exec

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// recycleEnv has a source that fills recycled batches, a sink that
// releases the batches it wrote and one that keeps them as they are.
type recycleEnv struct {
	mu       sync.Mutex
	got      map[string][]int64           // ids per sink, in write order
	released map[*stdlib.Record]bool      // first slots of released batches
	reused   int                          // batches the source got back
	kept     map[string][][]stdlib.Record // batches a retaining sink holds
}

type recycleSource struct {
	cfg  stdlib.Config
	env  *recycleEnv
	next int64
}

func (s *recycleSource) Open(context.Context, stdlib.Resumer) error { return nil }

func (s *recycleSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	count := s.cfg.Int("count")
	if s.next >= count {
		return nil, stdlib.ErrEndOfInput
	}
	b := s.cfg.Recycler.Batch(int(min(64, count-s.next)))
	for i := range b {
		if b[i].Value != nil || b[i].Pos != (stdlib.Position{}) {
			return nil, context.Canceled // a recycled batch must come back zeroed
		}
		b[i] = stdlib.Record{Value: map[string]any{"id": s.next}, Pos: stdlib.Position{Source: s.cfg.Stage, Partition: "0", Offset: s.next}, Partition: -1}
		s.next++
	}
	s.env.mu.Lock()
	if s.env.released[&b[:1][0]] {
		s.env.reused++
	}
	s.env.mu.Unlock()
	return b, nil
}

func (s *recycleSource) Commit(context.Context, []stdlib.Position) error { return nil }
func (s *recycleSource) Close(context.Context) error                     { return nil }

type recycleSink struct {
	cfg     stdlib.Config
	env     *recycleEnv
	release bool
}

func (s *recycleSink) Open(context.Context) ([]stdlib.Position, error) { return nil, nil }

func (s *recycleSink) Write(_ context.Context, b []stdlib.Record) error {
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	for _, r := range b {
		s.env.got[s.cfg.Stage] = append(s.env.got[s.cfg.Stage], r.Value.(map[string]any)["id"].(int64))
	}
	if s.release {
		s.env.released[&b[:1][0]] = true
	} else {
		s.env.kept[s.cfg.Stage] = append(s.env.kept[s.cfg.Stage], b)
	}
	return nil
}

func (s *recycleSink) Checkpoint(context.Context, stdlib.Checkpoint) error { return nil }
func (s *recycleSink) Close(context.Context) error                         { return nil }

// TestRecycledBatches runs a source filling recycled batches into a
// releasing sink and, on a fan-out, into a sink that keeps the batches it
// is given: the source gets released batches back, zeroed, and the kept
// ones are never reused.
func TestRecycledBatches(t *testing.T) {
	for _, fanOut := range []bool{false, true} {
		env := &recycleEnv{got: map[string][]int64{}, released: map[*stdlib.Record]bool{}, kept: map[string][][]stdlib.Record{}}
		reg := stdlib.NewRegistry(
			&stdlib.Spec{Kind: stdlib.SourceKind, Name: "rsrc", Bounded: true, NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
				return &recycleSource{cfg: cfg, env: env}, nil
			}},
			&stdlib.Spec{Kind: stdlib.SinkKind, Name: "release", Releases: true, NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
				return &recycleSink{cfg: cfg, env: env, release: true}, nil
			}},
			&stdlib.Spec{Kind: stdlib.SinkKind, Name: "keep", NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
				return &recycleSink{cfg: cfg, env: env}, nil
			}},
		)
		const n = 20000
		stages := []*plan.Stage{
			stage("src", "source", "rsrc", 1, attr("count", ival(n))),
			stage("f", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "id % 3 != 0")),
			stage("out", "sink", "release", 3),
		}
		edges := []*plan.Edge{edge("src", "f"), edge("f", "out")}
		if fanOut {
			stages = append(stages, stage("held", "sink", "keep", 4))
			edges = append(edges, edge("f", "held"))
		}
		if err := Run(context.Background(), newPlan(time.Second, stages, edges...), &Config{Registry: reg, StateDir: t.TempDir(), BatchSize: 64}); err != nil {
			t.Fatal(err)
		}
		var want []int64
		for i := int64(0); i < n; i++ {
			if i%3 != 0 {
				want = append(want, i)
			}
		}
		sinks := []string{"out"}
		if fanOut {
			sinks = append(sinks, "held")
		}
		for _, name := range sinks {
			if got := env.got[name]; !slices.Equal(got, want) {
				t.Fatalf("fan-out %v: sink %s got %d records, want %d", fanOut, name, len(got), len(want))
			}
		}
		// What the retaining sink holds is what it was given.
		var held []int64
		for _, b := range env.kept["held"] {
			for _, r := range b {
				held = append(held, r.Value.(map[string]any)["id"].(int64))
			}
		}
		if fanOut && !slices.Equal(held, want) {
			t.Fatalf("the retaining sink's batches changed after Write: %d records", len(held))
		}
		if env.reused == 0 {
			t.Fatalf("fan-out %v: no released batch came back to the source", fanOut)
		}
	}
}
