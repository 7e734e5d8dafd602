package testrun

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// errorSink is the capture stage that receives every failed record when
// generating.
const errorSink = "__errors"

// ErrNoSchema is Generate's error for a pipeline without a typed source:
// there is nothing to generate.
var ErrNoSchema = errors.New("no source declares a schema: nothing to generate")

// Problem is one finding of Generate.
type Problem struct {
	Stage   string // stage that failed, or sink whose schema the record breaks
	Message string
	Record  any // the record (normalized)
}

// Generate feeds n random records per typed source through p (seeded, so a
// run is repeatable) and returns the records that made a stage fail or
// reached a sink not matching its declared schema. A parameter read when
// the run starts takes the value the file's tests give it.
func Generate(ctx context.Context, p *plan.Plan, n int, seed uint64, opts *Options) ([]Problem, error) {
	o := opts.defaults()
	clone, err := clonePlan(p)
	if err != nil {
		return nil, err
	}
	w := newWorld()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	fed := false
	for _, s := range clone.Stages {
		if s.Kind != stdlib.SourceKind {
			continue
		}
		typ := s.Schema
		if typ == nil {
			typ = s.Output
		}
		if typ == nil || typ.Kind != types.Record {
			continue
		}
		for i := 0; i < n; i++ {
			m, _ := randomValue(rng, typ, 0).(map[string]any)
			w.given[s.Name] = append(w.given[s.Name], m)
		}
		fed = true
	}
	if !fed {
		return nil, ErrNoSchema
	}
	swapComponents(clone, &plan.Test{Params: testParams(p)})
	// Every stage dead-letters into one capture, so each failing record is
	// reported rather than stopping the run. The pipeline's own dead-letter
	// sinks, which only dead-letter edges fed, would get nothing: they go.
	var edges []*plan.Edge
	hasInput := map[string]bool{}
	for _, e := range clone.Edges {
		if !e.DeadLetter {
			edges = append(edges, e)
			hasInput[e.To] = true
		}
	}
	clone.Stages = slices.DeleteFunc(clone.Stages, func(s *plan.Stage) bool {
		return s.Kind == stdlib.SinkKind && !hasInput[s.Name]
	})
	clone.Stages = append(clone.Stages, &plan.Stage{Name: errorSink, Kind: stdlib.SinkKind, Component: captureComponent,
		Tasks: 1, Delivery: string(stdlib.AtLeastOnce)})
	for _, s := range clone.Stages {
		if s.Name == errorSink {
			continue
		}
		s.OnError = &plan.ErrorPolicy{Action: stdlib.ActionDeadLetter, Target: errorSink}
		edges = append(edges, &plan.Edge{From: s.Name, To: errorSink, DeadLetter: true})
	}
	clone.Edges = edges

	dir, err := os.MkdirTemp("", "pipe-generate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := exec.Run(rctx, clone, &exec.Config{Registry: w.registry(o.Registry), StateDir: dir}); err != nil {
		return nil, err
	}
	var out []Problem
	for _, r := range w.captured[errorSink] {
		env, _ := r.Value.(map[string]any)
		stage, _ := env["stage"].(string)
		msg, _ := env["error"].(string)
		if at, _ := env["at"].(string); at != "" {
			msg = at + ": " + msg
		}
		out = append(out, Problem{Stage: stage, Message: msg, Record: normalize(env["original"])})
	}
	for _, s := range p.Stages {
		if s.Kind != stdlib.SinkKind {
			continue
		}
		for _, r := range w.captured[s.Name] {
			if path, f, ok := nonFinite(r.Value, ""); ok {
				out = append(out, Problem{Stage: s.Name, Message: fmt.Sprintf("field %q is %v, which JSON and CSV cannot hold (a division by zero?)", path, f), Record: normalize(r.Value)})
				continue
			}
			if s.Schema == nil {
				continue
			}
			if err := conforms(r.Value, s.Schema, ""); err != nil {
				out = append(out, Problem{Stage: s.Name, Message: fmt.Sprintf("record does not match schema %s: %v", s.Schema, err), Record: normalize(r.Value)})
			}
		}
	}
	return out, nil
}

// nonFinite returns the path of the first NaN or infinity in v, in the
// order of sorted keys, and its value.
func nonFinite(v any, path string) (string, float64, bool) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return path, x, true
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if p, f, ok := nonFinite(x[k], join(path, k)); ok {
				return p, f, true
			}
		}
	case []any:
		for i, e := range x {
			if p, f, ok := nonFinite(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, f, true
			}
		}
	}
	return "", 0, false
}

// join appends field k to a dotted path.
func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

var words = []string{"alpha", "beta", "gamma", "", "DE", "NL", "x@example.com", "Ünïcode", "0", "-1", " "}

// randomValue returns a random value of t; optional fields are null about
// one time in four.
func randomValue(rng *rand.Rand, t *types.Type, depth int) any {
	if t.Optional && rng.IntN(4) == 0 {
		return nil
	}
	switch t.Kind {
	case types.String:
		if rng.IntN(3) == 0 {
			return fmt.Sprintf("s%d", rng.IntN(1000))
		}
		return words[rng.IntN(len(words))]
	case types.Int:
		switch rng.IntN(5) {
		case 0:
			return int64(0)
		case 1:
			return -rng.Int64N(1000)
		}
		return rng.Int64N(1_000_000)
	case types.Float:
		switch rng.IntN(5) {
		case 0:
			return 0.0
		case 1:
			return -rng.Float64() * 1000
		}
		return rng.Float64() * 1000
	case types.Bool:
		return rng.IntN(2) == 0
	case types.Timestamp:
		return time.Unix(1_600_000_000+rng.Int64N(200_000_000), 0).UTC()
	case types.Bytes:
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	case types.List:
		n := rng.IntN(4)
		if depth > 3 {
			n = 0
		}
		out := make([]any, n)
		for i := range out {
			out[i] = randomValue(rng, t.Elem, depth+1)
		}
		return out
	case types.Map:
		n := rng.IntN(3)
		if depth > 3 {
			n = 0
		}
		out := make(map[string]any, n)
		for i := 0; i < n; i++ {
			out[words[rng.IntN(len(words))]] = randomValue(rng, t.Elem, depth+1)
		}
		return out
	case types.Record:
		out := make(map[string]any, len(t.Fields))
		for _, f := range t.Fields {
			if v := randomValue(rng, f.Type, depth+1); v != nil {
				out[f.Name] = v
			}
		}
		return out
	}
	return words[rng.IntN(len(words))]
}

// conforms checks a run-time value strictly against t.
func conforms(v any, t *types.Type, path string) error {
	if v == nil {
		if t.Optional || t.Kind == types.Any {
			return nil
		}
		return fmt.Errorf("field %q is null", path)
	}
	bad := func() error { return fmt.Errorf("field %q: %T is not %s", path, v, t.WithOptional(false)) }
	switch t.Kind {
	case types.Any:
		return nil
	case types.String:
		if _, ok := v.(string); !ok {
			return bad()
		}
	case types.Int:
		if _, ok := v.(int64); !ok {
			return bad()
		}
	case types.Float:
		switch v.(type) {
		case float64, int64:
		default:
			return bad()
		}
	case types.Bool:
		if _, ok := v.(bool); !ok {
			return bad()
		}
	case types.Timestamp:
		if _, ok := v.(time.Time); !ok {
			return bad()
		}
	case types.Bytes:
		if _, ok := v.([]byte); !ok {
			return bad()
		}
	case types.List:
		l, ok := v.([]any)
		if !ok {
			return bad()
		}
		for i, e := range l {
			if err := conforms(e, t.Elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case types.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		for k, e := range m {
			if err := conforms(e, t.Elem, join(path, k)); err != nil {
				return err
			}
		}
	case types.Record:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		for _, f := range t.Fields {
			if err := conforms(m[f.Name], f.Type, join(path, f.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// testParams returns the parameter values the file's tests give, the first
// test's for a parameter several give.
func testParams(p *plan.Plan) []*plan.MapEntry {
	var out []*plan.MapEntry
	for _, t := range p.Tests {
		for _, e := range t.Params {
			if !slices.ContainsFunc(out, func(o *plan.MapEntry) bool { return o.Key == e.Key }) {
				out = append(out, e)
			}
		}
	}
	return out
}
