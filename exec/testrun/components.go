package testrun

import (
	"context"
	"sync"

	"pipe.dev/pipe/stdlib"
)

// Component names the runner swaps in; plan stages keep their own names.
const (
	givenComponent   = "test_given"
	captureComponent = "test_capture"
)

// world holds one test run's inputs and captured outputs.
type world struct {
	given map[string][]map[string]any // source stage -> records

	mu       sync.Mutex
	captured map[string][]stdlib.Record // sink stage -> records, in arrival order
}

func newWorld() *world {
	return &world{given: map[string][]map[string]any{}, captured: map[string][]stdlib.Record{}}
}

// registry returns base's specs plus the given source and capture sink
// bound to w.
func (w *world) registry(base *stdlib.Registry) *stdlib.Registry {
	specs := base.Specs("")
	specs = append(specs,
		&stdlib.Spec{
			Kind: stdlib.SourceKind, Name: givenComponent, Summary: "records given by a test",
			Bounded: true, Schema: true,
			NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
				return &givenSource{stage: cfg.Stage, records: w.given[cfg.Stage]}, nil
			},
		},
		&stdlib.Spec{
			Kind: stdlib.SinkKind, Name: captureComponent, Summary: "captures records for a test",
			Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce, stdlib.AtMostOnce},
			Schema:   true,
			NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
				return &captureSink{w: w, stage: cfg.Stage}, nil
			},
		},
	)
	return stdlib.NewRegistry(specs...)
}

// givenSource emits a test's records once, as one partition.
type givenSource struct {
	stage   string
	records []map[string]any
	from    int
}

func (s *givenSource) Open(ctx context.Context, resume stdlib.Resumer) error {
	if off, ok := resume.Resume("given", ""); ok {
		s.from = int(off) + 1
	}
	return nil
}

func (s *givenSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	if s.from >= len(s.records) {
		return nil, stdlib.ErrEndOfInput
	}
	out := make([]stdlib.Record, 0, len(s.records)-s.from)
	for i := s.from; i < len(s.records); i++ {
		out = append(out, stdlib.Record{
			Value:     s.records[i],
			Partition: -1,
			Pos:       stdlib.Position{Source: s.stage, Partition: "given", Offset: int64(i)},
		})
	}
	s.from = len(s.records)
	return out, nil
}

func (s *givenSource) Commit(context.Context, []stdlib.Position) error { return nil }
func (s *givenSource) Close(context.Context) error                     { return nil }

// captureSink records what reaches a sink.
type captureSink struct {
	w     *world
	stage string
}

func (s *captureSink) Open(context.Context) ([]stdlib.Position, error) { return nil, nil }

func (s *captureSink) Write(_ context.Context, batch []stdlib.Record) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.captured[s.stage] = append(s.w.captured[s.stage], batch...)
	return nil
}

func (s *captureSink) Checkpoint(context.Context, stdlib.Checkpoint) error { return nil }
func (s *captureSink) Close(context.Context) error                         { return nil }
