package exec

import (
	"slices"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// TestRowsRunAlike runs plans whose source emits stdlib.Row values, and
// again with the same records as maps: every sink receives the same
// records and every stage counts the same. A sink that reads rows gets
// rows where no stage needed a map, and maps elsewhere.
func TestRowsRunAlike(t *testing.T) {
	dl := func() stageOpt { return onError(&plan.ErrorPolicy{Action: "dead_letter", Target: "dlq"}) }
	type rowCase struct {
		plan func(rows bool) *plan.Plan
		// rowSinks must receive rows only (rows on), mapSinks maps only.
		rowSinks, mapSinks []string
	}
	src := func(rows bool, opts ...stageOpt) *plan.Stage {
		return stage("src", "source", "mem", 1, append([]stageOpt{attr("rows", bval(rows))}, opts...)...)
	}
	cases := map[string]rowCase{
		"fast filter and map, on rows throughout": {
			plan: func(rows bool) *plan.Plan {
				return newPlan(20*time.Millisecond, []*plan.Stage{
					src(rows, tasks(2), attr("partitions", ival(3)), attr("count", ival(400))),
					stage("f", "transform", "filter", 2, tasks(2), withExprs(plan.WhereExpr, "", "amount > 50", "", "id >= 3")),
					stage("m", "transform", "map", 3, tasks(2),
						withExprs(plan.AssignExpr, "customer", "user", "region", `"EU"`, "big", "amount >= 90", "amount", "id"),
						func(s *plan.Stage) { s.Drop = []string{"user", "part"} }),
					stage("out", "sink", "memrows", 4, tasks(2)),
				}, edge("src", "f"), edge("f", "m"), edge("m", "out"))
			},
			rowSinks: []string{"out"},
		},
		"rows into a sink of maps": {
			plan: func(rows bool) *plan.Plan {
				return newPlan(20*time.Millisecond, []*plan.Stage{
					src(rows, attr("count", ival(200))),
					stage("f", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "amount > 50")),
					stage("rest", "sink", "memsink", 3),
				}, edge("src", "f"), edge("f", "rest"))
			},
		},
		"keep, and a field the rows lack": {
			plan: func(rows bool) *plan.Plan {
				return newPlan(20*time.Millisecond, []*plan.Stage{
					src(rows, attr("count", ival(300)), attr("batch", ival(37))),
					stage("m", "transform", "map", 2, withExprs(plan.AssignExpr, "who", "user", "gone", "missing"),
						func(s *plan.Stage) { s.Keep = []string{"id", "amount"} }),
					stage("out", "sink", "memrows", 3),
				}, edge("src", "m"), edge("m", "out"))
			},
		},
		"slow expressions, dead letters, a sink of maps": {
			plan: func(rows bool) *plan.Plan {
				return newPlan(20*time.Millisecond, []*plan.Stage{
					src(rows, tasks(2), attr("partitions", ival(3)), attr("count", ival(300)), dl()),
					stage("f", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "id % 7 != 3"), dl()),
					stage("m", "transform", "map", 3, withExprs(plan.AssignExpr, "x", badExpr, "y", "user"), dl(),
						func(s *plan.Stage) { s.Drop = []string{"user"} }),
					stage("out", "sink", "memsink", 4, attr("reject", ival(11)), dl()),
					stage("dlq", "sink", "memrows", 5),
				}, edge("src", "f"), edge("f", "m"), edge("m", "out"),
					dlqEdge("src", "dlq"), dlqEdge("f", "dlq"), dlqEdge("m", "dlq"), dlqEdge("out", "dlq"))
			},
			mapSinks: []string{"dlq"},
		},
		"fan-out, route, a component transform, partition_by": {
			plan: func(rows bool) *plan.Plan {
				return newPlan(20*time.Millisecond, []*plan.Stage{
					src(rows, attr("partitions", ival(2)), attr("count", ival(300))),
					stage("f", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "amount < 80")),
					stage("m", "transform", "map", 3, tasks(2), withExprs(plan.AssignExpr, "tag", `"m"`),
						func(s *plan.Stage) { s.PartitionBy = "user" }),
					stage("up", "transform", "upper", 4, onError(&plan.ErrorPolicy{Action: "skip"})),
					stage("r", "transform", "route", 5, withExprs(plan.CaseExpr, "small", "amount < 10"),
						func(s *plan.Stage) { s.Ports = []string{"small", "rest"}; s.Else = "rest" }),
					stage("out", "sink", "memrows", 6),
					stage("small", "sink", "memrows", 7),
					stage("rest", "sink", "memsink", 8),
				}, edge("src", "f"), edge("f", "m"), edge("f", "up"), edge("f", "r"), edge("m", "out"), edge("up", "out"),
					port("r", "small", "small"), port("r", "rest", "rest"))
			},
			mapSinks: []string{"out", "small"},
		},
	}
	sinks := []string{"out", "dlq", "small", "rest"}
	for name, c := range cases {
		results := map[bool]string{}
		for _, rows := range []bool{true, false} {
			env := newTestEnv(t)
			var last Snapshot
			p := c.plan(rows)
			readsRows := map[string]bool{}
			for _, st := range p.Stages {
				readsRows[st.Name] = st.Component == "memrows"
			}
			if err := Run(t.Context(), p, &Config{Registry: env.reg, StateDir: t.TempDir(), BatchSize: 16,
				Now: func() time.Time { return time.Unix(0, 0) }, Status: func(s Snapshot) { last = s }}); err != nil {
				t.Fatalf("%s (rows %v): %v", name, rows, err)
			}
			got := map[string]map[bool]int{}
			results[rows] = runOutputs(env, last, sinks, func(sk string, r *stdlib.Record) {
				_, isRow := r.Value.(*stdlib.Row)
				if got[sk] == nil {
					got[sk] = map[bool]int{}
				}
				got[sk][isRow]++
				r.Value = stdlib.Materialize(r.Value)
			})
			for _, sk := range sinks {
				switch g := got[sk]; {
				case !rows && g[true] > 0:
					t.Errorf("%s: sink %s got %d rows from a source of maps", name, sk, g[true])
				case !readsRows[sk] && g[true] > 0:
					t.Errorf("%s: sink %s, which does not read rows, got %d rows", name, sk, g[true])
				case rows && slices.Contains(c.rowSinks, sk) && (g[false] > 0 || g[true] == 0):
					t.Errorf("%s: sink %s got %d rows and %d maps, want rows only", name, sk, g[true], g[false])
				case rows && slices.Contains(c.mapSinks, sk) && g[true] > 0:
					t.Errorf("%s: sink %s got %d rows, want maps only", name, sk, g[true])
				}
			}
		}
		if results[true] != results[false] {
			t.Errorf("%s: run on rows differs:\n%s\non maps:\n%s", name, results[true], results[false])
		}
	}
}
