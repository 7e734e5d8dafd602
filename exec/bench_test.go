package exec

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// genSource produces count records shaped like the benchmark's
// {"id","user","amount","country","event","ts"} in batches of 1024.
type genSource struct {
	cfg   stdlib.Config
	n, at int64
	users []string
	part  string
}

func (g *genSource) Open(ctx context.Context, resume stdlib.Resumer) error {
	g.n = g.cfg.Int("count") / int64(g.cfg.Tasks)
	g.part = strconv.Itoa(g.cfg.Task)
	g.users = make([]string, 1000)
	for i := range g.users {
		g.users[i] = "u" + strconv.Itoa(i)
	}
	return nil
}

func (g *genSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	if g.at >= g.n {
		return nil, stdlib.ErrEndOfInput
	}
	k := min(1024, g.n-g.at)
	out := make([]stdlib.Record, k)
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range out {
		id := g.at + int64(i)
		out[i] = stdlib.Record{
			Value: newEvent(id, g.users[id%1000], float64(id%10000)/100, ts),
			Pos:   stdlib.Position{Source: g.cfg.Stage, Partition: "0", Offset: id},
		}
	}
	g.at += k
	return out, nil
}

func (g *genSource) Commit(context.Context, []stdlib.Position) error { return nil }
func (g *genSource) Close(context.Context) error                     { return nil }

type discardSink struct{}

func (discardSink) Open(context.Context) ([]stdlib.Position, error)     { return nil, nil }
func (discardSink) Write(context.Context, []stdlib.Record) error        { return nil }
func (discardSink) Checkpoint(context.Context, stdlib.Checkpoint) error { return nil }
func (discardSink) Close(context.Context) error                         { return nil }

func benchRegistry() *stdlib.Registry {
	return stdlib.NewRegistry(
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "gen", Bounded: true, NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
			return &genSource{cfg: cfg}, nil
		}},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "discard", NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			return discardSink{}, nil
		}},
	)
}

func benchPlan(n int, mapTasks int) *plan.Plan {
	return newPlan(time.Second, []*plan.Stage{
		stage("gen", "source", "gen", 1, tasks(mapTasks), attr("count", ival(int64(n)))),
		stage("t", "transform", "filter", 2, tasks(mapTasks), withExprs(plan.WhereExpr, "", "amount > 50")),
		stage("m", "transform", "map", 3, tasks(mapTasks), withExprs(plan.AssignExpr, "customer", "user", "region", `"EU"`),
			func(s *plan.Stage) { s.Drop = []string{"user"} }),
		stage("out", "sink", "discard", 4),
	}, edge("gen", "t"), edge("t", "m"), edge("m", "out"))
}

// BenchmarkGenMapDiscard runs generate → filter → map → discard over b.N
// records and reports records per second.
func BenchmarkGenMapDiscard(b *testing.B) {
	reg := benchRegistry()
	dir := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	if err := Run(b.Context(), benchPlan(b.N, 1), &Config{Registry: reg, StateDir: dir}); err != nil {
		b.Fatal(err)
	}
	report(b, start, cpu)
}

// BenchmarkGenMapDiscardParallel is BenchmarkGenMapDiscard with two tasks
// per stage before the sink (the sink's task aligns two senders).
func BenchmarkGenMapDiscardParallel(b *testing.B) {
	reg := benchRegistry()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	if err := Run(b.Context(), benchPlan(b.N, 2), &Config{Registry: reg, StateDir: b.TempDir()}); err != nil {
		b.Fatal(err)
	}
	report(b, start, cpu)
}

// BenchmarkEngineOnly measures the engine without per-record work: records
// from pre-built batches pass a source → sink pipeline.
func BenchmarkEngineOnly(b *testing.B) {
	reg := stdlib.NewRegistry(
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "pre", NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
			return &preSource{n: cfg.Int("count")}, nil
		}},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "discard", NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			return discardSink{}, nil
		}},
	)
	p := newPlan(time.Second, []*plan.Stage{
		stage("pre", "source", "pre", 1, attr("count", ival(int64(b.N)))),
		stage("f", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "true")),
		stage("out", "sink", "discard", 3),
	}, edge("pre", "f"), edge("f", "out"))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	if err := Run(b.Context(), p, &Config{Registry: reg, StateDir: b.TempDir()}); err != nil {
		b.Fatal(err)
	}
	report(b, start, cpu)
}

type preSource struct {
	n, at int64
	batch []stdlib.Record
}

func (s *preSource) Open(context.Context, stdlib.Resumer) error {
	s.batch = make([]stdlib.Record, 1024)
	v := map[string]any{"x": int64(1)}
	for i := range s.batch {
		s.batch[i] = stdlib.Record{Value: v, Pos: stdlib.Position{Source: "pre", Partition: "0"}}
	}
	return nil
}

func (s *preSource) Read(context.Context) ([]stdlib.Record, error) {
	if s.at >= s.n {
		return nil, stdlib.ErrEndOfInput
	}
	k := min(1024, s.n-s.at)
	s.at += k
	return s.batch[:k], nil
}

func (s *preSource) Commit(context.Context, []stdlib.Position) error { return nil }
func (s *preSource) Close(context.Context) error                     { return nil }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds records/s (wall clock) and CPU nanoseconds per record, the
// figure that holds on a busy machine: on two idle cores the pipeline
// moves about 2e9 / cpu-ns/rec records per second when it keeps both busy.
func report(b *testing.B, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/rec")
}

func newEvent(id int64, user string, amount float64, ts time.Time) map[string]any {
	m := make(map[string]any, 6)
	m["id"] = id
	m["user"] = user
	m["amount"] = amount
	m["country"] = "NL"
	m["event"] = "purchase"
	m["ts"] = ts
	return m
}

// BenchmarkMapRecord measures one map stage evaluation (customer := user,
// region := "EU", drop user) on the benchmark record.
func BenchmarkMapRecord(b *testing.B) {
	benchCompute(b, stage("m", "transform", "map", 1, withExprs(plan.AssignExpr, "customer", "user", "region", `"EU"`),
		func(s *plan.Stage) { s.Drop = []string{"user"} }))
}

// BenchmarkFilterRecord measures one filter evaluation (amount > 50).
func BenchmarkFilterRecord(b *testing.B) {
	benchCompute(b, stage("f", "transform", "filter", 1, withExprs(plan.WhereExpr, "", "amount > 50")))
}

// benchCompute measures one evaluation of a built-in transform stage on
// the benchmark record.
func benchCompute(b *testing.B, st *plan.Stage) {
	r := &run{cfg: Config{Now: time.Now}}
	t, err := newTransformTask(r, &stageRT{st: st}, 0, stdlib.Config{})
	if err != nil {
		b.Fatal(err)
	}
	rec := stdlib.Record{Value: newEvent(1, "u1", 79.19, time.Now())}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := t.compute(&rec); err != nil {
			b.Fatal(err)
		}
	}
}
