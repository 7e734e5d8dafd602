package exec

import (
	"context"
	"errors"
	"fmt"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// message is what flows on a task's input channel: a batch, a barrier or
// the end of a sender's stream. from is the sender's index among the
// receiving task's senders.
type message struct {
	from    int
	batch   []stdlib.Record
	barrier *barrier
	eos     bool
}

// barrier is checkpoint id travelling downstream with the positions of the
// source partitions upstream of where it is. Barriers are immutable.
type barrier struct {
	id    uint64
	final bool
	pos   []stdlib.Position
}

// partKey identifies a source partition.
type partKey struct{ source, partition string }

// errStopped is returned by blocked operations when the run is failing.
var errStopped = errors.New("run stopped")

// stageRT is a stage at run time.
type stageRT struct {
	idx  int
	st   *plan.Stage
	spec *stdlib.Spec // nil for the built-in filter, map and route
	at   string       // file:line of the stage

	// inboxes[task][sender] is the channel from one upstream task to one
	// task of this stage: a task can stop reading one sender (barrier
	// alignment) while the others go on.
	inboxes [][]chan message
	// senders is the number of upstream tasks sending to each task.
	senders int
	// senderBase gives, per upstream stage index, the sender index of its
	// task 0 at this stage.
	senderBase map[int]int

	// ports maps an output port ("" for the main output) to the stages
	// it feeds; dlq is the dead-letter sink, if any.
	ports map[string][]*stageRT
	dlq   *stageRT
	// outs lists every distinct downstream stage, dead-letter sink included.
	outs []*stageRT

	// sources names the source stages upstream of a sink (dead-letter
	// paths included).
	sources map[string]bool

	policy *plan.ErrorPolicy
	// progs holds the stage's compiled expressions by kind (built once,
	// when the first task is created).
	progs map[plan.ExprKind][]*program
	// partBy is the expression picking this stage's task for a record
	// when partition_by names one.
	partBy *program
	// clone: records reaching this stage on a fan-out are deep-copied
	// (custom transforms may mutate them).
	clone bool
	// exclusive: every record value reaching this stage is referenced by
	// no other record or stage, so a map stage may change it in place.
	exclusive bool
	// release: a sink that keeps no reference to the batches it wrote
	// (its spec Releases them); they go back to the sources.
	release bool
	// params are the run's parameters, which its expressions read.
	params runParams
	// chained: a built-in transform whose task i runs inside task i of
	// its only upstream stage, called with each batch instead of fed
	// through a channel; tasks holds those tasks (see markChained).
	chained bool
	tasks   []*transformTask

	// metrics holds each task's counters; lastErr the stage's last error.
	metrics []*taskMetrics
	lastErr lastError
}

func (s *stageRT) isSink() bool { return s.st.Kind == stdlib.SinkKind }

// fail makes err the stage's error, placed at its declaration: the one
// place that adds the file, line and stage name to what a component says.
func (s *stageRT) fail(err error) error { return s.failAt(s.at, err) }

// failAt is fail placed at an expression or attribute of the stage.
func (s *stageRT) failAt(at string, err error) error {
	return &StageError{Stage: s.st.Name, At: at, Err: err}
}

// recoverPanic, deferred by every goroutine and call that runs the
// stage's code, turns a panic there into the stage's error.
func (s *stageRT) recoverPanic(err *error) {
	if p := recover(); p != nil {
		*err = s.fail(fmt.Errorf("panic: %v", p))
	}
}

// closeInto closes a component when its task ends; a close error is the
// task's error unless it already has one.
func (s *stageRT) closeInto(ctx context.Context, err *error, close func(context.Context) error) {
	if cerr := close(context.WithoutCancel(ctx)); cerr != nil && *err == nil {
		*err = s.fail(fmt.Errorf("closing: %w", cerr))
	}
}
func (s *stageRT) isSource() bool { return s.st.Kind == stdlib.SourceKind }

// buildGraph resolves the plan's stages and edges.
func buildGraph(p *plan.Plan, reg *stdlib.Registry, depth int, now func() time.Time, params runParams) ([]*stageRT, error) {
	if len(p.Stages) == 0 {
		return nil, errors.New("plan has no stages")
	}
	byName := map[string]*stageRT{}
	stages := make([]*stageRT, len(p.Stages))
	for i, st := range p.Stages {
		if st == nil {
			return nil, fmt.Errorf("plan stage %d is empty", i)
		}
		if _, dup := byName[st.Name]; dup {
			return nil, fmt.Errorf("stage %q appears twice in the plan", st.Name)
		}
		s := &stageRT{
			idx: i, st: st, at: atSpan(st.Span.File, st.Span.Start.Line),
			ports: map[string][]*stageRT{}, senderBase: map[int]int{},
			policy: st.OnError, params: params,
		}
		if st.Tasks < 1 {
			st = cloneStageTasks(st)
			s.st = st
		}
		switch st.Kind {
		case stdlib.SourceKind, stdlib.SinkKind:
			s.spec = reg.Lookup(stdlib.Kind(st.Kind), st.Component)
			if s.spec == nil {
				return nil, fmt.Errorf("%s: stage %q: unknown %s %q", s.at, st.Name, st.Kind, st.Component)
			}
		case stdlib.TransformKind:
			switch st.Component {
			case stdlib.FilterComponent, stdlib.MapComponent, stdlib.RouteComponent:
			default:
				s.spec = reg.Lookup(stdlib.TransformKind, st.Component)
				if s.spec == nil || s.spec.NewTransform == nil {
					return nil, fmt.Errorf("%s: stage %q: unknown transform %q", s.at, st.Name, st.Component)
				}
				s.clone = true
			}
		default:
			return nil, fmt.Errorf("%s: stage %q has unknown kind %q", s.at, st.Name, st.Kind)
		}
		s.release = s.isSink() && s.spec.Releases
		if (s.isSource() && s.spec.NewSource == nil) || (s.isSink() && s.spec.NewSink == nil) {
			return nil, fmt.Errorf("%s: stage %q: component %q cannot run as a %s", s.at, st.Name, st.Component, st.Kind)
		}
		switch st.PartitionBy {
		case "", "partition":
		default:
			prog, err := compileExpr(st, &plan.Expr{Kind: plan.AttrExpr, Source: st.PartitionBy, Span: st.Span}, now, params)
			if err != nil {
				return nil, fmt.Errorf("stage %q: partition_by: %w", st.Name, err)
			}
			s.partBy = prog
		}
		s.metrics = make([]*taskMetrics, st.Tasks)
		for t := range s.metrics {
			s.metrics[t] = &taskMetrics{}
		}
		byName[st.Name] = s
		stages[i] = s
	}
	upstream := make([][]*stageRT, len(stages))
	addUp := func(to, from *stageRT) {
		for _, u := range upstream[to.idx] {
			if u == from {
				return
			}
		}
		upstream[to.idx] = append(upstream[to.idx], from)
		from.outs = append(from.outs, to)
	}
	for _, e := range p.Edges {
		from, to := byName[e.From], byName[e.To]
		if from == nil || to == nil {
			return nil, fmt.Errorf("plan edge %s -> %s names an unknown stage", e.From, e.To)
		}
		if from.isSink() && !e.DeadLetter {
			return nil, fmt.Errorf("plan edge %s -> %s leaves a sink", e.From, e.To)
		}
		if to.isSource() {
			return nil, fmt.Errorf("plan edge %s -> %s enters a source", e.From, e.To)
		}
		if e.DeadLetter {
			if !to.isSink() {
				return nil, fmt.Errorf("dead-letter edge %s -> %s does not end at a sink", e.From, e.To)
			}
			if from.dlq != nil && from.dlq != to {
				return nil, fmt.Errorf("stage %q has two dead-letter sinks", e.From)
			}
			from.dlq = to
		} else {
			from.ports[e.Port] = appendOnce(from.ports[e.Port], to)
		}
		addUp(to, from)
	}
	hasSource := false
	for _, s := range stages {
		hasSource = hasSource || s.isSource()
	}
	if !hasSource {
		return nil, errors.New("plan has no source")
	}
	markExclusive(stages, upstream)
	markChained(stages, upstream)
	for _, s := range stages {
		if s.isSink() {
			s.sources = upstreamSources(s, upstream)
		}
	}
	for _, s := range stages {
		if pol := s.policy; pol != nil {
			if t := deadLetterTarget(pol); t != "" && (s.dlq == nil || s.dlq.st.Name != t) {
				return nil, fmt.Errorf("%s: stage %q: dead-letter sink %q has no dead-letter edge in the plan", s.at, s.st.Name, t)
			}
		}
		if !s.isSource() && len(upstream[s.idx]) == 0 {
			return nil, fmt.Errorf("%s: stage %q has no input", s.at, s.st.Name)
		}
		n := 0
		for _, u := range upstream[s.idx] {
			s.senderBase[u.idx] = n
			n += u.st.Tasks
		}
		s.senders = n
		per := max(2, (depth+n-1)/max(n, 1))
		s.inboxes = make([][]chan message, s.st.Tasks)
		for i := range s.inboxes {
			s.inboxes[i] = make([]chan message, n)
			for j := range s.inboxes[i] {
				s.inboxes[i][j] = make(chan message, per)
			}
		}
	}
	return stages, nil
}

func cloneStageTasks(st *plan.Stage) *plan.Stage {
	c := *st
	c.Tasks = 1
	return &c
}

func appendOnce(l []*stageRT, s *stageRT) []*stageRT {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

// deadLetterTarget returns the dead-letter sink a policy may use.
func deadLetterTarget(p *plan.ErrorPolicy) string {
	for ; p != nil; p = p.Then {
		if p.Action == stdlib.ActionDeadLetter {
			return p.Target
		}
	}
	return ""
}

// markExclusive finds the stages whose input values nobody else holds:
// each upstream stage produces values of its own (a source, whose values
// are fresh per record, or a map) or passes on exclusive input (filter,
// route in mode first), and feeds no other stage.
func markExclusive(stages []*stageRT, upstream [][]*stageRT) {
	owns := make([]bool, len(stages)) // the stage's output values are exclusive
	for _, s := range stages {        // topological order: upstream first
		in := len(upstream[s.idx]) > 0
		for _, u := range upstream[s.idx] {
			n := 0
			for _, o := range u.outs {
				if o != u.dlq {
					n++
				}
			}
			if !owns[u.idx] || n != 1 || (u.dlq == s) {
				in = false
			}
		}
		s.exclusive = in && !s.isSource()
		switch {
		case s.isSource():
			owns[s.idx] = true
		case s.st.Component == "map":
			owns[s.idx] = true
		case s.st.Component == "filter":
			owns[s.idx] = s.exclusive
		case s.st.Component == "route":
			mode := ""
			if v := s.st.Attrs["mode"]; v != nil {
				mode = v.Str
			}
			owns[s.idx] = s.exclusive && mode != "all"
		}
	}
}

// chaining enables markChained (tests compare runs without it).
var chaining = true

// markChained finds the built-in transforms (filter, map, route) that run
// inside their upstream stage's tasks: the stage has one upstream stage,
// whose only main output it is, with as many tasks and a forward edge
// (task i feeds task i). Its records then need no channel, no goroutine
// switch, and are processed while the upstream task's cache still holds
// them; a chain of such stages runs in one task.
func markChained(stages []*stageRT, upstream [][]*stageRT) {
	if !chaining {
		return
	}
	for _, s := range stages {
		if s.spec != nil || s.isSource() || s.isSink() || s.partBy != nil || len(upstream[s.idx]) != 1 {
			continue
		}
		u := upstream[s.idx][0]
		if u.isSink() || u.dlq == s || u.st.Tasks != s.st.Tasks || len(u.ports) != 1 || len(u.ports[""]) != 1 || u.ports[""][0] != s {
			continue
		}
		s.chained = true
	}
}

// upstreamSources returns the names of the source stages upstream of s.
func upstreamSources(s *stageRT, upstream [][]*stageRT) map[string]bool {
	out, seen := map[string]bool{}, map[int]bool{}
	var walk func(*stageRT)
	walk = func(s *stageRT) {
		if seen[s.idx] {
			return
		}
		seen[s.idx] = true
		if s.isSource() {
			out[s.st.Name] = true
		}
		for _, u := range upstream[s.idx] {
			walk(u)
		}
	}
	walk(s)
	return out
}
