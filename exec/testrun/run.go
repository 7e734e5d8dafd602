package testrun

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	udiff "github.com/aymanbagabas/go-udiff"

	"pipe.dev/pipe/compiler/exprs"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// Options configures a test run. The zero value works.
type Options struct {
	// Registry holds the transforms; nil means stdlib.Default.
	Registry *stdlib.Registry
	// Match selects tests by name; nil runs all.
	Match *regexp.Regexp
	// Parallel is how many tests run at once (default 4).
	Parallel int
	// Timeout bounds one test's run (default 1m).
	Timeout time.Duration
}

// Result is the outcome of one test.
type Result struct {
	Test     string
	Span     lang.Span // the test block
	Failures []Failure
	// Err is set when the test could not run (a stage failed, a bad given record).
	Err      error
	Duration time.Duration
}

// Passed reports whether the test ran and every expectation held.
func (r *Result) Passed() bool { return r.Err == nil && len(r.Failures) == 0 }

// Failure is one expectation that did not hold.
type Failure struct {
	Span    lang.Span // the expect line
	Target  string
	Message string
	Diff    string // unified diff of expected and actual records, if any
}

func (o *Options) defaults() Options {
	out := Options{}
	if o != nil {
		out = *o
	}
	if out.Registry == nil {
		out.Registry = stdlib.Default
	}
	if out.Parallel <= 0 {
		out.Parallel = 4
	}
	if out.Timeout <= 0 {
		out.Timeout = time.Minute
	}
	return out
}

// Run runs p's tests (those Match selects) and returns their results in
// source order.
func Run(ctx context.Context, p *plan.Plan, opts *Options) []*Result {
	o := opts.defaults()
	var tests []*plan.Test
	for _, t := range p.Tests {
		if o.Match == nil || o.Match.MatchString(t.Name) {
			tests = append(tests, t)
		}
	}
	results := make([]*Result, len(tests))
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for i, t := range tests {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = runOne(ctx, p, t, o)
		}()
	}
	wg.Wait()
	return results
}

// portSink names the capture stage standing for route port stage.port.
func portSink(target string) string { return "__expect__" + target }

func runOne(ctx context.Context, p *plan.Plan, t *plan.Test, o Options) (res *Result) {
	start := time.Now()
	res = &Result{Test: t.Name, Span: t.Span}
	defer func() {
		if r := recover(); r != nil {
			res.Err = fmt.Errorf("internal error: %v", r)
		}
		res.Duration = time.Since(start)
	}()

	clone, err := clonePlan(p)
	if err != nil {
		res.Err = err
		return res
	}
	w := newWorld()
	stages := map[string]*plan.Stage{}
	for _, s := range clone.Stages {
		stages[s.Name] = s
	}
	for _, g := range t.Given {
		src := stages[g.Source]
		if src == nil {
			res.Err = fmt.Errorf("%s: given names unknown source %q", g.Span, g.Source)
			return res
		}
		typ := src.Schema
		if typ == nil {
			typ = src.Output
		}
		for i, v := range g.Records {
			m, _ := goValue(v).(map[string]any)
			if typ != nil && typ.Kind == types.Record {
				c, err := codec.Coerce(m, typ, "")
				if err != nil {
					res.Err = fmt.Errorf("%s: given record %d for %q: %v", g.Span, i+1, g.Source, err)
					return res
				}
				m, _ = c.(map[string]any)
			}
			w.given[g.Source] = append(w.given[g.Source], m)
		}
	}
	swapComponents(clone, t)

	cfg := &exec.Config{Registry: w.registry(o.Registry)}
	dir, err := os.MkdirTemp("", "pipe-test-")
	if err != nil {
		res.Err = err
		return res
	}
	defer os.RemoveAll(dir)
	cfg.StateDir = dir
	if t.Clock != "" {
		at, err := time.Parse(time.RFC3339Nano, t.Clock)
		if err != nil {
			res.Err = fmt.Errorf("%s: clock %q: %v", t.Span, t.Clock, err)
			return res
		}
		cfg.Now = func() time.Time { return at }
	}
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := exec.Run(rctx, clone, cfg); err != nil {
		res.Err = err
		return res
	}
	if rctx.Err() != nil {
		res.Err = fmt.Errorf("timed out after %s", o.Timeout)
		return res
	}
	for _, e := range t.Expect {
		name := e.Target
		if _, isStage := stages[name]; !isStage {
			name = portSink(e.Target)
		}
		if f := check(e, w.captured[name], stages, cfg.Now); f != nil {
			res.Failures = append(res.Failures, *f)
		}
	}
	return res
}

// clonePlan deep-copies p.
func clonePlan(p *plan.Plan) (*plan.Plan, error) {
	data, err := plan.Marshal(p)
	if err != nil {
		return nil, err
	}
	return plan.Unmarshal(data)
}

// swapComponents replaces sources and sinks with test components and adds a
// capture stage for each route port an expectation names; the test's
// parameter values replace the plan's.
func swapComponents(p *plan.Plan, t *plan.Test) {
	for _, e := range t.Params {
		for _, prm := range p.Params {
			if prm.Name == e.Key {
				prm.Value = e.Value
			}
		}
	}
	byName := map[string]*plan.Stage{}
	for _, s := range p.Stages {
		byName[s.Name] = s
		switch s.Kind {
		case stdlib.SourceKind:
			s.Component = givenComponent
			s.Tasks = 1
			s.Attrs = nil
		case stdlib.SinkKind:
			s.Component = captureComponent
			s.Tasks = 1
			s.Attrs = nil // per-record attributes (key, topic) stay in Exprs
		}
	}
	for _, e := range t.Expect {
		if _, ok := byName[e.Target]; ok {
			continue
		}
		stage, port, ok := cutPort(e.Target)
		route := byName[stage]
		if !ok || route == nil {
			continue
		}
		name := portSink(e.Target)
		if byName[name] != nil {
			continue
		}
		s := &plan.Stage{Name: name, Kind: stdlib.SinkKind, Component: captureComponent, Span: e.Span, Tasks: 1,
			Input: route.Output, Delivery: string(stdlib.AtLeastOnce)}
		byName[name] = s
		p.Stages = append(p.Stages, s)
		p.Edges = append(p.Edges, &plan.Edge{From: stage, Port: port, To: name})
	}
}

// cutPort splits "stage.port".
func cutPort(target string) (stage, port string, ok bool) {
	i := strings.LastIndexByte(target, '.')
	if i < 0 {
		return "", "", false
	}
	return target[:i], target[i+1:], true
}

// check evaluates one expectation against the records a target received.
func check(e *plan.Expect, got []stdlib.Record, stages map[string]*plan.Stage, now func() time.Time) *Failure {
	fail := func(format string, args ...any) *Failure {
		return &Failure{Span: e.Span, Target: e.Target, Message: fmt.Sprintf(format, args...)}
	}
	actual := make([]any, len(got))
	for i, r := range got {
		actual[i] = normalize(r.Value)
	}
	switch {
	case e.Empty:
		if len(got) != 0 {
			f := fail("expected %q to receive no records, got %d", e.Target, len(got))
			f.Diff = udiff.Unified("expected", "actual", "", render(actual))
			return f
		}
	case e.Count != nil:
		if len(got) != *e.Count {
			f := fail("expected %q to receive %d records, got %d", e.Target, *e.Count, len(got))
			f.Diff = udiff.Unified("expected", "actual", "", render(actual))
			return f
		}
	case e.Where != nil:
		var in *types.Type
		if s := stages[e.Target]; s != nil {
			in = s.Input
		}
		var opt exprs.Options
		if now != nil {
			opt.Now = now
		}
		prog, err := exprs.Compile(e.Where.Source, exprs.Context{Kind: plan.WhereExpr, Input: in}, opt)
		if err != nil {
			return fail("expect where: %v", err)
		}
		if len(got) == 0 {
			return fail("expected %q to receive records matching %q, got none", e.Target, e.Where.Source)
		}
		for i, r := range got {
			env, _ := r.Value.(map[string]any)
			c := make(map[string]any, len(env))
			for k, v := range env {
				c[k] = v
			}
			v, err := prog.Run(nil, c)
			if err != nil {
				return fail("record %d: evaluating %q: %v", i+1, e.Where.Source, err)
			}
			if ok, _ := v.(bool); !ok {
				f := fail("record %d of %q does not satisfy %q", i+1, e.Target, e.Where.Source)
				f.Diff = render([]any{actual[i]})
				return f
			}
		}
	default:
		want := make([]any, len(e.Records))
		for i, v := range e.Records {
			want[i] = normalize(goValue(v))
		}
		ok := len(want) == len(actual)
		msg := ""
		if !ok {
			msg = fmt.Sprintf("expected %d records at %q, got %d", len(want), e.Target, len(actual))
		} else {
			for i := range want {
				if where, good := match(want[i], actual[i], ""); !good {
					ok = false
					msg = fmt.Sprintf("record %d at %q differs at field %q", i+1, e.Target, where)
					break
				}
			}
		}
		if !ok {
			shown := make([]any, len(actual))
			for i := range actual {
				if i < len(want) {
					shown[i] = project(want[i], actual[i])
				} else {
					shown[i] = actual[i]
				}
			}
			f := fail("%s", msg)
			f.Diff = udiff.Unified("expected", "actual", render(want), render(shown))
			return f
		}
	}
	return nil
}
