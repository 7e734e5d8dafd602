package exec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
)

// memSource emits count records per partition: {"id", "part", "amount",
// "user"}, offsets 0..count-1. attrs: partitions, count, batch, bad (every
// bad-th offset is malformed), endless (ignore count), delay (per Read),
// idle (Read blocks until cancelled), hold (after count records Read
// blocks until cancelled instead of ending), rows (emit stdlib.Row values),
// identity (of every partition).
type memSource struct {
	cfg     stdlib.Config
	parts   []string
	next    map[string]int64
	cur     int
	count   int64
	batch   int
	bad     int64
	endless bool
	delay   time.Duration
	env     *testEnv
}

func (s *memSource) Open(ctx context.Context, resume stdlib.Resumer) error {
	n := int(s.cfg.Int("partitions"))
	if n == 0 {
		n = 1
	}
	s.next = map[string]int64{}
	if l, ok := resume.(stdlib.PositionLister); ok {
		s.env.mu.Lock()
		s.env.listed = append(s.env.listed, l.StoredPositions()...)
		s.env.mu.Unlock()
	}
	for i := 0; i < n; i++ {
		if i%s.cfg.Tasks != s.cfg.Task {
			continue
		}
		p := fmt.Sprintf("p%d", i)
		s.parts = append(s.parts, p)
		if off, ok := resume.Resume(p, s.cfg.String("identity")); ok {
			s.next[p] = off + 1
		}
	}
	s.count = s.cfg.Int("count")
	s.batch = int(s.cfg.Int("batch"))
	if s.batch == 0 {
		s.batch = 100
	}
	s.bad = s.cfg.Int("bad")
	s.endless = s.cfg.Bool("endless")
	s.delay = s.cfg.Duration("delay")
	return nil
}

func (s *memSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.cfg.Bool("idle") {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for tries := 0; tries < len(s.parts); tries++ {
		p := s.parts[s.cur%len(s.parts)]
		s.cur++
		off := s.next[p]
		if !s.endless && off >= s.count {
			continue
		}
		var out []stdlib.Record
		for len(out) < s.batch && (s.endless || off < s.count) {
			r := stdlib.Record{Pos: stdlib.Position{Source: s.cfg.Stage, Partition: p, Offset: off}, Partition: -1}
			if s.bad > 0 && off%s.bad == s.bad-1 {
				r.Raw = []byte(fmt.Sprintf("{bad %d", off))
				r.Err = errors.New("unexpected end of JSON input")
			} else {
				m := map[string]any{
					"id": off, "part": p, "amount": float64(off%100) + 0.5,
					"user": fmt.Sprintf("u%d", off), "nested": map[string]any{"a": int64(1)},
				}
				r.Value = m
				if s.cfg.Rows && s.cfg.Bool("rows") {
					row := stdlib.NewRow(memShape)
					for i, name := range memShape.Names() {
						row.Vals()[i] = m[name]
					}
					r.Value = row
				}
			}
			out = append(out, r)
			off++
		}
		s.next[p] = off
		return out, nil
	}
	if s.cfg.Bool("hold") {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, stdlib.ErrEndOfInput
}

// caughtUpSource is a memSource that tells whether it read every record
// of its partitions (stdlib.CaughtUpper).
type caughtUpSource struct{ *memSource }

func (s caughtUpSource) CaughtUp() bool {
	for _, p := range s.parts {
		if s.next[p] < s.count {
			return false
		}
	}
	return true
}

// memShape is the shape of memSource's rows (attribute rows).
var memShape = stdlib.NewShape("amount", "id", "nested", "part", "user")

func (s *memSource) Commit(ctx context.Context, pos []stdlib.Position) error {
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	for _, p := range pos {
		k := p.Source + "/" + p.Partition
		if old, ok := s.env.commits[k]; ok && p.Offset <= old && p.Identity == s.env.commitIDs[k] {
			s.env.t.Errorf("commit of %v not above %d", p, old)
		}
		s.env.commits[k] = p.Offset
		s.env.commitIDs[k] = p.Identity
	}
	s.env.commitCalls++
	return nil
}

func (s *memSource) Close(ctx context.Context) error { return nil }

// sinkStore is a sink stage's durable state across runs.
type sinkStore struct {
	cfg     stdlib.Config // of the last task built
	mu      sync.Mutex
	durable []stdlib.Record
	held    map[int]map[partKey]stdlib.Position // per task
	writes  int
	cps     []stdlib.Checkpoint
	// overlaps counts a startSink's checkpoints that finished while it
	// went on writing.
	overlaps int
}

// memSink buffers writes and makes them durable on Checkpoint together
// with the positions, kept per task (exactly-once style); Close loses the
// buffer. attrs:
// reject (reject records whose id % reject == reject-1), fail_writes (fail
// the first n Write calls), crash_at (fail the run at this task's n-th
// Write call), exactly (report held positions).
type memSink struct {
	cfg     stdlib.Config
	st      *sinkStore
	buf     []stdlib.Record
	writes  int
	failN   int
	crashAt int
}

func (s *memSink) Open(ctx context.Context) ([]stdlib.Position, error) {
	s.failN = int(s.cfg.Int("fail_writes"))
	s.crashAt = int(s.cfg.Int("crash_at"))
	if !s.cfg.Bool("exactly") {
		return nil, nil
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	var out []stdlib.Position
	for _, p := range s.st.held[s.cfg.Task] {
		out = append(out, p)
	}
	return out, nil
}

func (s *memSink) Write(ctx context.Context, b []stdlib.Record) error {
	s.writes++
	s.st.mu.Lock()
	s.st.writes++
	total := s.st.writes
	s.st.mu.Unlock()
	_ = total
	if s.crashAt > 0 && s.writes == s.crashAt {
		return errors.New("simulated crash")
	}
	if s.writes <= s.failN {
		return errors.New("temporarily unavailable")
	}
	if rj := s.cfg.Int("reject"); rj > 0 {
		var errs stdlib.RecordErrors
		for i, r := range b {
			if id, _ := r.Value.(map[string]any)["id"].(int64); id%rj == rj-1 {
				errs = append(errs, stdlib.RecordError{Index: i, Err: fmt.Errorf("id %d rejected", id)})
				continue
			}
			s.buf = append(s.buf, r)
		}
		if errs != nil {
			return errs
		}
		return nil
	}
	s.buf = append(s.buf, b...)
	return nil
}

func (s *memSink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.commit(s.buf, cp)
	s.buf = nil
	return nil
}

// commit makes recs durable with the checkpoint cp; s.st.mu is held.
func (s *memSink) commit(recs []stdlib.Record, cp stdlib.Checkpoint) {
	s.st.durable = append(s.st.durable, recs...)
	if s.st.held == nil {
		s.st.held = map[int]map[partKey]stdlib.Position{}
	}
	h := map[partKey]stdlib.Position{}
	for _, p := range cp.Positions {
		h[partKey{p.Source, p.Partition}] = p
	}
	s.st.held[s.cfg.Task] = h
	s.st.cps = append(s.st.cps, cp)
}

func (s *memSink) Close(ctx context.Context) error { return nil }

// upperTransform is a component transform that mutates records in place
// and emits each twice when attrs double is set.
type upperTransform struct{ cfg stdlib.Config }

func (u upperTransform) Apply(ctx context.Context, r *stdlib.Record, emit func(stdlib.Record)) error {
	m := r.Value.(map[string]any)
	if m["user"] == "u13" {
		return errors.New("user 13 is unlucky")
	}
	m["user"] = "X" + m["user"].(string)
	emit(*r)
	return nil
}

type testEnv struct {
	t           *testing.T
	reg         *stdlib.Registry
	mu          sync.Mutex
	sinks       map[string]*sinkStore
	commits     map[string]int64
	commitIDs   map[string]string
	commitCalls int
	listed      []stdlib.Position // what sources' Resumers listed
}

func newTestEnv(t *testing.T) *testEnv {
	env := &testEnv{t: t, sinks: map[string]*sinkStore{}, commits: map[string]int64{}, commitIDs: map[string]string{}}
	env.reg = stdlib.NewRegistry(
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "mem", Bounded: true, NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
			return &memSource{cfg: cfg, env: env}, nil
		}},
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "memcaught", Bounded: true, NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
			return caughtUpSource{&memSource{cfg: cfg, env: env}}, nil
		}},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "memsink", NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			st := env.sink(cfg.Stage)
			st.mu.Lock()
			st.cfg = cfg
			st.mu.Unlock()
			return &memSink{cfg: cfg, st: st}, nil
		}},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "memsink_start", NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			return &startSink{memSink: &memSink{cfg: cfg, st: env.sink(cfg.Stage)}}, nil
		}},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "memrows", ReadsRows: true, NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			return &memSink{cfg: cfg, st: env.sink(cfg.Stage)}, nil
		}},
		&stdlib.Spec{Kind: stdlib.TransformKind, Name: "upper", NewTransform: func(cfg stdlib.Config) (stdlib.Transform, error) {
			return upperTransform{cfg}, nil
		}},
	)
	return env
}

func (e *testEnv) sink(name string) *sinkStore {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sinks[name] == nil {
		e.sinks[name] = &sinkStore{}
	}
	return e.sinks[name]
}

// output returns the durable records of a sink.
func (e *testEnv) output(name string) []stdlib.Record {
	st := e.sink(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.durable)
}

// plan building

type stageOpt func(*plan.Stage)

func tasks(n int) stageOpt { return func(s *plan.Stage) { s.Tasks = n } }
func attr(name string, v *plan.Value) stageOpt {
	return func(s *plan.Stage) {
		if s.Attrs == nil {
			s.Attrs = map[string]*plan.Value{}
		}
		s.Attrs[name] = v
	}
}
func ival(n int64) *plan.Value        { return &plan.Value{Kind: plan.IntValue, Int: n} }
func bval(b bool) *plan.Value         { return &plan.Value{Kind: plan.BoolValue, Bool: b} }
func ident(s string) *plan.Value      { return &plan.Value{Kind: plan.IdentValue, Str: s} }
func dur(d time.Duration) *plan.Value { return &plan.Value{Kind: plan.DurationValue, Int: int64(d)} }
func onError(p *plan.ErrorPolicy) stageOpt {
	return func(s *plan.Stage) { s.OnError = p }
}
func withExprs(kind plan.ExprKind, pairs ...string) stageOpt {
	return func(s *plan.Stage) {
		for i := 0; i+1 < len(pairs); i += 2 {
			s.Exprs = append(s.Exprs, &plan.Expr{Kind: kind, Target: pairs[i], Source: pairs[i+1],
				Span: lang.Span{File: s.Span.File, Start: lang.Pos{Line: s.Span.Start.Line + 1 + len(s.Exprs)}}})
		}
	}
}

func stage(name, kind, comp string, line int, opts ...stageOpt) *plan.Stage {
	s := &plan.Stage{Name: name, Kind: stdlib.Kind(kind), Component: comp, Tasks: 1}
	s.Span.File = "test.pipe"
	s.Span.Start.Line = line
	for _, o := range opts {
		o(s)
	}
	return s
}

func edge(from, to string) *plan.Edge { return &plan.Edge{From: from, To: to} }
func port(from, p, to string) *plan.Edge {
	return &plan.Edge{From: from, Port: p, To: to}
}
func dlqEdge(from, to string) *plan.Edge { return &plan.Edge{From: from, To: to, DeadLetter: true} }

func newPlan(cp time.Duration, stages []*plan.Stage, edges ...*plan.Edge) *plan.Plan {
	return &plan.Plan{Version: plan.Version, Pipeline: "t", Checkpoint: int64(cp), Stages: stages, Edges: edges}
}

func (e *testEnv) run(ctx context.Context, p *plan.Plan, dir string) error {
	return Run(ctx, p, &Config{Registry: e.reg, StateDir: dir, BatchSize: 64})
}

// StoredPositions implements stdlib.PositionStore (attribute exactly).
func (s *memSink) StoredPositions(ctx context.Context) ([]stdlib.Position, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	var out []stdlib.Position
	for _, h := range s.st.held {
		for _, p := range h {
			out = append(out, p)
		}
	}
	return out, nil
}

// SetPositions implements stdlib.PositionStore: set goes to task 0.
func (s *memSink) SetPositions(ctx context.Context, source string, reset []string, set []stdlib.Position) error {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	for _, h := range s.st.held {
		for k := range h {
			if k.source == source && (len(reset) == 0 || slices.Contains(reset, k.partition)) {
				delete(h, k)
			}
		}
	}
	for _, p := range set {
		if s.st.held == nil {
			s.st.held = map[int]map[partKey]stdlib.Position{}
		}
		if s.st.held[0] == nil {
			s.st.held[0] = map[partKey]stdlib.Position{}
		}
		s.st.held[0][partKey{p.Source, p.Partition}] = p
	}
	return nil
}
