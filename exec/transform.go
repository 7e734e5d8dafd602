package exec

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// transformTask runs one task of a filter, map, route or component
// transform stage.
type transformTask struct {
	r    *run
	s    *stageRT
	task int
	rt   *router
	vm   vm.VM

	where  []*program // filter
	assign []*program // map
	keep   [][]string
	drop   [][]string
	cases  []*program // route, in port order
	all    bool       // route mode = all
	elseP  []*dest    // route else port
	caseD  [][]*dest  // route: dests per case
	custom stdlib.Transform
	out    []stdlib.Record // custom transform output of one record

	// inPlace: the map changes its exclusive input instead of copying it
	// (every path is a top-level field); keepSet holds the kept fields.
	matched []int // route mode all: the cases a record matched
	inPlace bool
	keepSet map[string]bool
	vals    []any

	// rows: the stage works on stdlib.Row values as they are (a filter
	// or an in-place map whose expressions all have fast paths); other
	// stages materialize them on entry.
	rows  bool
	plan  rowPlan
	rowIn []any // a row's input values while it is reshaped
}

// rowPlan is how a map stage reshapes rows of shape in: output field k
// takes input value from[k], or for from[k] < 0 the value of assignment
// -1-from[k].
type rowPlan struct {
	in, out *stdlib.Shape
	from    []int
	// forward: every kept field moves to its own position or an earlier
	// one (from[k] >= k), so the values can be moved in place, in order,
	// without a copy of the row's former values.
	forward bool
}

func newTransformTask(r *run, s *stageRT, task int, cfg stdlib.Config) (*transformTask, error) {
	t := &transformTask{r: r, s: s, task: task}
	progs, err := stagePrograms(s, r.cfg.Now)
	if err != nil {
		return nil, err
	}
	switch s.st.Component {
	case stdlib.FilterComponent:
		t.where = progs[plan.WhereExpr]
		t.rows = true
		for _, p := range t.where {
			t.rows = t.rows && p.fast == comparePath
		}
	case "map":
		t.assign = progs[plan.AssignExpr]
		for _, k := range s.st.Keep {
			t.keep = append(t.keep, splitPath(k))
		}
		for _, d := range s.st.Drop {
			t.drop = append(t.drop, splitPath(d))
		}
		t.inPlace = s.exclusive
		for _, p := range append(append([][]string{}, t.keep...), t.drop...) {
			t.inPlace = t.inPlace && len(p) == 1
		}
		for _, p := range t.assign {
			t.inPlace = t.inPlace && len(p.path) == 1
		}
		if t.keep != nil {
			t.keepSet = map[string]bool{}
			for _, k := range t.keep {
				t.keepSet[k[0]] = true
			}
		}
		t.rows = t.inPlace
		for _, p := range t.assign {
			t.rows = t.rows && p.fast != slowPath
		}
	case "route":
		t.cases = progs[plan.CaseExpr]
		switch m := cfg.String("mode"); m {
		case "", "first":
		case "all":
			t.all = true
		default:
			return nil, fmt.Errorf("%s: stage %q: unknown route mode %q", s.at, s.st.Name, m)
		}
	default:
		tr, err := s.spec.NewTransform(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: stage %q: %w", s.at, s.st.Name, err)
		}
		t.custom = tr
	}
	return t, nil
}

// stagePrograms compiles a stage's expressions by kind, in source order.
// Programs are compiled once per stage and shared by its tasks.
func stagePrograms(s *stageRT, now func() time.Time) (map[plan.ExprKind][]*program, error) {
	if s.progs != nil {
		return s.progs, nil
	}
	out := map[plan.ExprKind][]*program{}
	for _, e := range s.st.Exprs {
		p, err := compileExpr(s.st, e, now, s.params)
		if err != nil {
			return nil, fmt.Errorf("stage %q: %w", s.st.Name, err)
		}
		out[e.Kind] = append(out[e.Kind], p)
	}
	s.progs = out
	return out, nil
}

func (t *transformTask) run(ctx context.Context) (err error) {
	defer t.s.recoverPanic(&err)
	t.start()
	return t.r.receive(ctx, t.s.inboxes[t.task], t)
}

// start builds the task's output router.
func (t *transformTask) start() {
	t.rt = newRouter(t.r, t.s, t.task)
	if t.cases != nil {
		for _, c := range t.cases {
			t.caseD = append(t.caseD, t.rt.ports[c.target])
		}
		t.elseP = t.rt.ports[t.s.st.Else]
	}
}

// chainedCall runs f, a call into the chained task t by its upstream
// task: a panic fails t's stage, as it would in t's own goroutine.
func (t *transformTask) chainedCall(f func() error) (err error) {
	defer t.s.recoverPanic(&err)
	return f()
}

func (t *transformTask) batch(ctx context.Context, b []stdlib.Record) error {
	start := time.Now()
	m := t.rt.m
	m.received.Add(int64(len(b)))
	if !t.rows {
		stdlib.MaterializeBatch(b)
	}
	sent := t.rt.sent
	var err error
	if t.rt.direct != nil && t.cases == nil && t.custom == nil {
		err = t.batchInPlace(ctx, b)
	} else {
		err = t.batchRouted(ctx, b)
		t.r.recycler.PutBatch(b)
	}
	m.sent.Add(t.rt.sent - sent)
	m.batch.since(start)
	return err
}

// batchInPlace runs a filter or map whose output is one task: outputs
// overwrite the batch from its start and the batch itself goes on.
func (t *transformTask) batchInPlace(ctx context.Context, b []stdlib.Record) error {
	n := 0
	for i := range b {
		rec := &b[i]
		v, keep, at, err := t.compute(rec)
		if err != nil {
			ok := false
			if err := t.r.failure(ctx, t.s, t.rt, EvaluateError, t.s.policy, rec, at, err, func() (bool, error) {
				var err error
				v, keep, _, err = t.compute(rec)
				ok = err == nil
				return ok, err
			}); err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		if keep {
			if n != i {
				b[n] = *rec
			}
			b[n].Value = v
			n++
		}
	}
	clear(b[n:])
	if err := t.rt.sendDirect(ctx, b[:n]); err != nil {
		return err
	}
	return t.rt.flush(ctx)
}

// batchRouted evaluates each record and buffers its output per
// destination task.
func (t *transformTask) batchRouted(ctx context.Context, b []stdlib.Record) error {
	for i := range b {
		rec := &b[i]
		at, err := t.apply(ctx, rec)
		if err == nil {
			continue
		}
		if err == errStopped {
			return err
		}
		if err := t.r.failure(ctx, t.s, t.rt, EvaluateError, t.s.policy, rec, at, err, func() (bool, error) {
			_, err := t.apply(ctx, rec)
			if err == errStopped {
				return false, err
			}
			return err == nil, err
		}); err != nil {
			return err
		}
	}
	return t.rt.flush(ctx)
}

// compute evaluates a filter (keep: the record passes; v is its value) or
// a map (v is the new value).
func (t *transformTask) compute(rec *stdlib.Record) (v any, keep bool, at string, err error) {
	if t.where != nil {
		for _, p := range t.where {
			ok, err := p.test(&t.vm, rec)
			if err != nil {
				return nil, false, errAt(err, p.at), err
			}
			if !ok {
				return nil, false, "", nil
			}
		}
		return rec.Value, true, "", nil
	}
	m, at, err := t.mapValue(rec)
	if err != nil {
		return nil, false, at, err
	}
	return m, true, "", nil
}

// apply processes one record, emitting its output only if every
// expression succeeded; on failure it returns where.
func (t *transformTask) apply(ctx context.Context, rec *stdlib.Record) (string, error) {
	switch {
	case t.cases != nil:
		matched := -1
		all := t.matched[:0]
		for i, p := range t.cases {
			ok, err := p.test(&t.vm, rec)
			if err != nil {
				return errAt(err, p.at), err
			}
			if ok {
				if !t.all {
					matched = i
					break
				}
				all = append(all, i)
			}
		}
		switch {
		case matched >= 0:
			return "", t.emit(ctx, *rec, t.caseD[matched])
		case len(all) > 0:
			t.matched = all
			for _, i := range all {
				if err := t.emit(ctx, *rec, t.caseD[i]); err != nil {
					return "", err
				}
			}
			return "", nil
		}
		return "", t.emit(ctx, *rec, t.elseP)
	case t.custom != nil:
		t.out = t.out[:0]
		if err := t.custom.Apply(ctx, rec, func(r stdlib.Record) { t.out = append(t.out, r) }); err != nil {
			return t.s.at, err
		}
		for _, r := range t.out {
			if err := t.emit(ctx, r, t.rt.main); err != nil {
				return "", err
			}
		}
		clear(t.out)
		return "", nil
	}
	v, keep, at, err := t.compute(rec)
	if err != nil || !keep {
		return at, err
	}
	out := *rec
	out.Value = v
	return "", t.emit(ctx, out, t.rt.main)
}

func (t *transformTask) emit(ctx context.Context, rec stdlib.Record, ds []*dest) error {
	if len(ds) == 0 {
		return nil
	}
	return t.rt.emit(ctx, rec, ds)
}

// mapValue builds a map stage's output: the input's fields (or only the
// kept ones), minus the dropped ones, plus each assignment evaluated
// against the input record. Nested maps of the input are copied before
// they are changed, so the input is never mutated.
func (t *transformTask) mapValue(rec *stdlib.Record) (any, string, error) {
	if row, ok := rec.Value.(*stdlib.Row); ok {
		if t.rows && t.mapRow(row) {
			return row, "", nil
		}
		rec.Value = row.Map()
	}
	in, ok := rec.Value.(map[string]any)
	if !ok {
		in = map[string]any{"value": rec.Value}
	}
	if t.inPlace {
		return t.mapInPlace(rec, in)
	}
	var out map[string]any
	if t.keep != nil {
		out = make(map[string]any, len(t.keep)+len(t.assign))
		for _, k := range t.keep {
			if v, ok := getPath(in, k); ok {
				setPath(out, k, v)
			}
		}
	} else {
		out = maps.Clone(in)
	}
	for _, d := range t.drop {
		deletePath(out, d)
	}
	for _, p := range t.assign {
		v, err := p.value(&t.vm, rec, in)
		if err != nil {
			return nil, errAt(err, p.at), err
		}
		if len(p.path) == 1 {
			out[p.target] = v
		} else {
			setPath(out, p.path, v)
		}
	}
	return out, "", nil
}

// mapInPlace is mapValue on an input nobody else holds: every assignment
// is evaluated first (against the input), then fields are removed and set.
func (t *transformTask) mapInPlace(rec *stdlib.Record, in map[string]any) (map[string]any, string, error) {
	t.vals = t.vals[:0]
	for _, p := range t.assign {
		v, err := p.value(&t.vm, rec, in)
		if err != nil {
			clear(t.vals)
			return nil, errAt(err, p.at), err
		}
		t.vals = append(t.vals, v)
	}
	if t.keepSet != nil {
		for k := range in {
			if !t.keepSet[k] {
				delete(in, k)
			}
		}
	}
	for _, d := range t.drop {
		delete(in, d[0])
	}
	for i, p := range t.assign {
		in[p.target] = t.vals[i]
	}
	clear(t.vals)
	return in, "", nil
}

// mapRow is mapInPlace on a row, which it reshapes to the stage's output
// for the row's shape. It returns false, leaving the row as it was, when
// an assignment needs its program run.
func (t *transformTask) mapRow(row *stdlib.Row) bool {
	t.vals = t.vals[:0]
	for _, p := range t.assign {
		v, ok := p.rowValue(row)
		if !ok {
			clear(t.vals)
			return false
		}
		t.vals = append(t.vals, v)
	}
	pl := t.rowPlan(row.Shape())
	if vals := row.Vals(); pl.forward && len(pl.from) <= cap(vals) {
		// In place: position k is written after every position below it
		// was, and reads one at or above it, not yet written.
		full := vals[:max(len(vals), len(pl.from))]
		for k, f := range pl.from {
			if f >= 0 {
				full[k] = full[f]
			} else {
				full[k] = t.vals[-1-f]
			}
		}
		row.Reshape(pl.out) // keeps the values set, drops those past the shape
		clear(t.vals)
		return true
	}
	in := append(t.rowIn[:0], row.Vals()...)
	out := row.Reshape(pl.out)
	for k, f := range pl.from {
		if f >= 0 {
			out[k] = in[f]
		} else {
			out[k] = t.vals[-1-f]
		}
	}
	clear(in)
	t.rowIn = in[:0]
	clear(t.vals)
	return true
}

// rowPlan returns the plan for rows of shape in: the fields mapInPlace
// would leave (kept, not dropped) in their order, then the assigned ones
// not among them.
func (t *transformTask) rowPlan(in *stdlib.Shape) *rowPlan {
	if t.plan.in == in {
		return &t.plan
	}
	var names []string
	var from []int
	for i, n := range in.Names() {
		if t.keepSet != nil && !t.keepSet[n] || slices.ContainsFunc(t.drop, func(d []string) bool { return d[0] == n }) {
			continue
		}
		names = append(names, n)
		from = append(from, i)
	}
	for k, p := range t.assign {
		if j := slices.Index(names, p.target); j >= 0 {
			from[j] = -1 - k
		} else {
			names = append(names, p.target)
			from = append(from, -1-k)
		}
	}
	forward := true
	for k, f := range from {
		forward = forward && (f < 0 || f >= k)
	}
	t.plan = rowPlan{in: in, out: stdlib.NewShape(names...), from: from, forward: forward}
	return &t.plan
}

func getPath(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// setPath sets a dotted path, creating nested maps and copying the ones on
// the way (they may belong to the input record).
func setPath(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if ok {
			next = cloneMap(next)
		} else {
			next = map[string]any{}
		}
		m[k] = next
		m = next
	}
	m[path[len(path)-1]] = v
}

// deletePath removes a dotted path, copying the nested maps on the way.
func deletePath(m map[string]any, path []string) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		next = cloneMap(next)
		m[k] = next
		m = next
	}
	delete(m, path[len(path)-1])
}

func cloneMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (t *transformTask) barrier(ctx context.Context, b *barrier) error {
	return t.rt.control(ctx, message{barrier: b})
}

func (t *transformTask) end(ctx context.Context) error {
	return t.rt.control(ctx, message{eos: true})
}
