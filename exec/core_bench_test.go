package exec

import (
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/core"
)

func call(name string, args ...*plan.Value) *plan.Value {
	c := &plan.Call{Name: name}
	for i, a := range args {
		c.Args = append(c.Args, &plan.MapEntry{Key: string(rune('0' + i)), Value: a})
	}
	return &plan.Value{Kind: plan.CallValue, Call: c}
}

func sval(s string) *plan.Value  { return &plan.Value{Kind: plan.StringValue, Str: s} }
func fval(f float64) *plan.Value { return &plan.Value{Kind: plan.FloatValue, Float: f} }

// eventFields is generate's template for the benchmark records
// {"id","user","amount","country","event","ts"}.
func eventFields() *plan.Value {
	return &plan.Value{Kind: plan.MapValue, Map: []*plan.MapEntry{
		{Key: "id", Value: call("seq")},
		{Key: "user", Value: call("pick", &plan.Value{Kind: plan.ListValue, List: []*plan.Value{sval("u1"), sval("u2"), sval("u3"), sval("u4")}})},
		{Key: "amount", Value: call("random_float", fval(1), fval(100))},
		{Key: "country", Value: sval("NL")},
		{Key: "event", Value: sval("purchase")},
		{Key: "ts", Value: call("timestamp")},
	}}
}

// BenchmarkCoreGenMapDiscard runs stdlib/core's generate → filter
// (amount > 50) → map (customer := user, drop user, region := "EU") →
// discard over b.N records, with the runtime's GC settings and with
// Config.MemoryLimit.
func BenchmarkCoreGenMapDiscard(b *testing.B) {
	for _, c := range []struct {
		name  string
		limit int64
	}{{"gc=default", 0}, {"gc=limit64MiB", 64 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			reg := stdlib.NewRegistry(core.GenerateSpec, core.DiscardSpec)
			p := newPlan(time.Second, []*plan.Stage{
				stage("gen", "source", "generate", 1, attr("count", ival(int64(b.N))), attr("fields", eventFields())),
				stage("t", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "amount > 50")),
				stage("m", "transform", "map", 3, withExprs(plan.AssignExpr, "customer", "user", "region", `"EU"`),
					func(s *plan.Stage) { s.Drop = []string{"user"} }),
				stage("out", "sink", "discard", 4),
			}, edge("gen", "t"), edge("t", "m"), edge("m", "out"))
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu := time.Now(), cpuTime()
			if err := Run(b.Context(), p, &Config{Registry: reg, StateDir: b.TempDir(), MemoryLimit: c.limit}); err != nil {
				b.Fatal(err)
			}
			report(b, start, cpu)
		})
	}
}
