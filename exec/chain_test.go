package exec

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

func TestMarkChained(t *testing.T) {
	filter := func(name string, line int, opts ...stageOpt) *plan.Stage {
		return stage(name, "transform", "filter", line, append(opts, withExprs(plan.WhereExpr, "", "true"))...)
	}
	mapS := func(name string, line int, opts ...stageOpt) *plan.Stage {
		return stage(name, "transform", "map", line, opts...)
	}
	for _, c := range []struct {
		name   string
		p      *plan.Plan
		chains []string
	}{
		{"line", newPlan(time.Second, []*plan.Stage{
			stage("src", "source", "mem", 1), filter("f", 2), mapS("m", 3), stage("out", "sink", "memsink", 4),
		}, edge("src", "f"), edge("f", "m"), edge("m", "out")), []string{"f", "m"}},
		{"forward edges of two tasks, dead letters", newPlan(time.Second, []*plan.Stage{
			stage("src", "source", "mem", 1, tasks(2)), mapS("m", 2, tasks(2)), filter("f", 3, tasks(2)),
			stage("out", "sink", "memsink", 4), stage("dlq", "sink", "memsink", 5),
		}, edge("src", "m"), edge("m", "f"), edge("f", "out"), dlqEdge("src", "dlq"), dlqEdge("m", "dlq")), []string{"f", "m"}},
		{"task counts differ", newPlan(time.Second, []*plan.Stage{
			stage("src", "source", "mem", 1, tasks(2)), filter("f", 2), mapS("m", 3, tasks(2)), stage("out", "sink", "memsink", 4),
		}, edge("src", "f"), edge("f", "m"), edge("m", "out")), nil},
		{"partition_by", newPlan(time.Second, []*plan.Stage{
			stage("src", "source", "mem", 1), filter("f", 2, func(s *plan.Stage) { s.PartitionBy = "part" }), stage("out", "sink", "memsink", 3),
		}, edge("src", "f"), edge("f", "out")), nil},
		{"fan-out and fan-in", newPlan(time.Second, []*plan.Stage{
			stage("src", "source", "mem", 1), filter("f", 2), mapS("a", 3), mapS("b", 4), mapS("j", 5), stage("out", "sink", "memsink", 6),
		}, edge("src", "f"), edge("f", "a"), edge("f", "b"), edge("a", "j"), edge("b", "j"), edge("j", "out")), []string{"f"}},
		{"after a route and a component", newPlan(time.Second, []*plan.Stage{
			stage("src", "source", "mem", 1),
			stage("r", "transform", "route", 2, withExprs(plan.CaseExpr, "x", "id > 1"), func(s *plan.Stage) { s.Ports = []string{"x", "y"}; s.Else = "y" }),
			mapS("a", 3), mapS("b", 4), stage("u", "transform", "upper", 5), mapS("c", 6),
			stage("out", "sink", "memsink", 7), stage("out2", "sink", "memsink", 8),
		}, edge("src", "r"), port("r", "x", "a"), port("r", "y", "b"), edge("a", "u"), edge("u", "c"), edge("c", "out"), edge("b", "out2")), []string{"c", "r"}},
	} {
		stages, err := buildGraph(c.p, newTestEnv(t).reg, 1, time.Now, runParams{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, s := range stages {
			if s.chained {
				got = append(got, s.st.Name)
			}
		}
		slices.Sort(got)
		if fmt.Sprint(got) != fmt.Sprint(c.chains) {
			t.Errorf("%s: chained %v, want %v", c.name, got, c.chains)
		}
	}
}

// runOutputs describes what the named sinks of a finished run hold,
// sorted by position and value, and what each stage counted: two runs
// that should agree compare equal on it. each, when not nil, sees every
// record first and may change it.
func runOutputs(env *testEnv, last Snapshot, sinks []string, each func(sink string, r *stdlib.Record)) string {
	out := ""
	for _, sk := range sinks {
		recs := env.output(sk)
		if each != nil {
			for i := range recs {
				each(sk, &recs[i])
			}
		}
		slices.SortStableFunc(recs, func(a, b stdlib.Record) int {
			return cmp.Or(cmp.Compare(a.Pos.Partition, b.Pos.Partition), cmp.Compare(a.Pos.Offset, b.Pos.Offset),
				cmp.Compare(fmt.Sprint(a.Value), fmt.Sprint(b.Value)))
		})
		out += fmt.Sprintf("%s: %d %v\n", sk, len(recs), recs)
	}
	for _, s := range last.Stages {
		out += fmt.Sprintf("%s in %d out %d errors %d\n", s.Name, s.In, s.Out, s.Errors)
	}
	return out
}

// TestChainedRunsAlike runs plans whose transforms are chained, and again
// with every stage in its own task: sinks receive the same records and the
// stages count the same.
func TestChainedRunsAlike(t *testing.T) {
	dl := func() stageOpt { return onError(&plan.ErrorPolicy{Action: "dead_letter", Target: "dlq"}) }
	plans := map[string]func() *plan.Plan{
		"filter, map, dead letters, two tasks": func() *plan.Plan {
			return newPlan(20*time.Millisecond, []*plan.Stage{
				stage("src", "source", "mem", 1, tasks(2), attr("partitions", ival(3)), attr("count", ival(500)), attr("bad", ival(17)), dl()),
				stage("f", "transform", "filter", 2, tasks(2), withExprs(plan.WhereExpr, "", "id % 7 != 3"), dl()),
				stage("m", "transform", "map", 3, tasks(2), withExprs(plan.AssignExpr, "x", badExpr, "y", "user"), dl(),
					func(s *plan.Stage) { s.Drop = []string{"user"} }),
				stage("out", "sink", "memsink", 4, tasks(2), attr("reject", ival(11)), dl()),
				stage("dlq", "sink", "memsink", 5),
			}, edge("src", "f"), edge("f", "m"), edge("m", "out"),
				dlqEdge("src", "dlq"), dlqEdge("f", "dlq"), dlqEdge("m", "dlq"), dlqEdge("out", "dlq"))
		},
		"skip, route, fan-out": func() *plan.Plan {
			return newPlan(20*time.Millisecond, []*plan.Stage{
				stage("src", "source", "mem", 1, attr("count", ival(800)), attr("batch", ival(37))),
				stage("m", "transform", "map", 2, withExprs(plan.AssignExpr, "x", badExpr), onError(&plan.ErrorPolicy{Action: "skip"})),
				stage("r", "transform", "route", 3, attr("mode", ident("all")),
					withExprs(plan.CaseExpr, "small", "amount < 10", "even", "id % 2 == 0"),
					func(s *plan.Stage) { s.Ports = []string{"small", "even", "rest"}; s.Else = "rest" }),
				stage("f", "transform", "filter", 4, withExprs(plan.WhereExpr, "", "id > 100")),
				stage("small", "sink", "memsink", 5),
				stage("even", "sink", "memsink", 6),
				stage("rest", "sink", "memsink", 7),
			}, edge("src", "m"), edge("m", "r"), port("r", "small", "small"), port("r", "even", "f"), edge("f", "even"), port("r", "rest", "rest"))
		},
	}
	defer func() { chaining = true }()
	for name, mk := range plans {
		results := map[bool]string{}
		for _, chain := range []bool{true, false} {
			chaining = chain
			env := newTestEnv(t)
			var last Snapshot
			if err := Run(t.Context(), mk(), &Config{Registry: env.reg, StateDir: t.TempDir(), BatchSize: 16,
				Now: func() time.Time { return time.Unix(0, 0) }, Status: func(s Snapshot) { last = s }}); err != nil {
				t.Fatalf("%s (chaining %v): %v", name, chain, err)
			}
			results[chain] = runOutputs(env, last, []string{"out", "dlq", "small", "even", "rest"}, nil)
		}
		if results[true] != results[false] {
			t.Errorf("%s: chained run differs:\n%s\nunchained:\n%s", name, results[true], results[false])
		}
	}
}
