package exec

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
)

// offsetsByPart groups the ids of records by source partition, in arrival order.
func offsetsByPart(recs []stdlib.Record) map[string][]int64 {
	out := map[string][]int64{}
	for _, r := range recs {
		out[r.Pos.Partition] = append(out[r.Pos.Partition], r.Pos.Offset)
	}
	return out
}

func checkOrdered(t *testing.T, recs []stdlib.Record) {
	t.Helper()
	for p, offs := range offsetsByPart(recs) {
		for i := 1; i < len(offs); i++ {
			if offs[i] <= offs[i-1] {
				t.Fatalf("partition %s: offset %d after %d", p, offs[i], offs[i-1])
			}
		}
	}
}

func runOK(t *testing.T, env *testEnv, p *plan.Plan) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := env.run(ctx, p, t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func TestOrderAcrossTaskCounts(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(5*time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, tasks(2), attr("partitions", ival(6)), attr("count", ival(3000)), attr("batch", ival(37))),
		stage("big", "transform", "filter", 2, tasks(3), withExprs(plan.WhereExpr, "", "amount > 50")),
		stage("shape", "transform", "map", 4, tasks(2), withExprs(plan.AssignExpr, "customer", "user", "region", `"EU"`, "deep.x", "id * 2"),
			func(s *plan.Stage) { s.Drop = []string{"user", "nested.a"} }),
		stage("out", "sink", "memsink", 8, tasks(3)),
	}, edge("src", "big"), edge("big", "shape"), edge("shape", "out"))
	runOK(t, env, p)
	out := env.output("out")
	checkOrdered(t, out)
	want := 6 * 3000 / 100 * 50 // amounts 50.5..99.5 pass
	if len(out) != want {
		t.Fatalf("got %d records, want %d", len(out), want)
	}
	for _, r := range out {
		m := r.Value.(map[string]any)
		if _, ok := m["user"]; ok || m["region"] != "EU" || m["customer"] != fmt.Sprintf("u%d", m["id"]) {
			t.Fatalf("bad record %v", m)
		}
		if d := m["deep"].(map[string]any); d["x"] != m["id"].(int64)*2 {
			t.Fatalf("bad nested assignment %v", m)
		}
		if n := m["nested"].(map[string]any); len(n) != 0 {
			t.Fatalf("nested.a not dropped: %v", m)
		}
	}
	for p, off := range env.commits {
		if off != 2999 {
			t.Errorf("partition %s committed at %d, want 2999", p, off)
		}
	}
}

func TestMapKeepDoesNotMutateInput(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(50))),
		stage("k", "transform", "map", 2, withExprs(plan.AssignExpr, "nested.b", "id"),
			func(s *plan.Stage) { s.Keep = []string{"id", "nested"} }),
		stage("out", "sink", "memsink", 3),
		stage("raw", "sink", "memsink", 4),
	}, edge("src", "k"), edge("k", "out"), edge("src", "raw"))
	runOK(t, env, p)
	for _, r := range env.output("out") {
		m := r.Value.(map[string]any)
		if len(m) != 2 || m["nested"].(map[string]any)["b"] != m["id"] {
			t.Fatalf("bad kept record %v", m)
		}
	}
	raw := env.output("raw")
	if len(raw) != 50 {
		t.Fatalf("raw got %d records", len(raw))
	}
	for _, r := range raw {
		if n := r.Value.(map[string]any)["nested"].(map[string]any); len(n) != 1 {
			t.Fatalf("input record mutated: %v", r.Value)
		}
	}
}

func TestFanOutFanIn(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(2*time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, tasks(2), attr("partitions", ival(4)), attr("count", ival(500))),
		stage("a", "transform", "map", 2, tasks(2), withExprs(plan.AssignExpr, "branch", `"a"`)),
		stage("b", "transform", "upper", 3, tasks(3), onError(&plan.ErrorPolicy{Action: "skip"})),
		stage("out", "sink", "memsink", 4, tasks(2)),
	}, edge("src", "a"), edge("src", "b"), edge("a", "out"), edge("b", "out"))
	runOK(t, env, p)
	out := env.output("out")
	var na, nb int
	var fromA, fromB []stdlib.Record
	for _, r := range out {
		m := r.Value.(map[string]any)
		if m["branch"] == "a" {
			na++
			fromA = append(fromA, r)
			if strings.HasPrefix(m["user"].(string), "X") {
				t.Fatalf("branch a saw branch b's mutation: %v", m)
			}
		} else {
			nb++
			fromB = append(fromB, r)
			if !strings.HasPrefix(m["user"].(string), "X") {
				t.Fatalf("branch b record not transformed: %v", m)
			}
		}
	}
	checkOrdered(t, fromA)
	checkOrdered(t, fromB)
	if na != 2000 || nb != 2000-4 {
		t.Fatalf("got %d from a and %d from b, want 2000 and 1996", na, nb)
	}
}

func TestRoute(t *testing.T) {
	for _, mode := range []string{"first", "all"} {
		t.Run(mode, func(t *testing.T) {
			env := newTestEnv(t)
			p := newPlan(time.Second, []*plan.Stage{
				stage("src", "source", "mem", 1, attr("count", ival(100))),
				stage("r", "transform", "route", 2, attr("mode", ident(mode)),
					withExprs(plan.CaseExpr, "small", "amount < 10", "even", "id % 2 == 0"),
					func(s *plan.Stage) { s.Ports = []string{"small", "even", "rest"}; s.Else = "rest" }),
				stage("small", "sink", "memsink", 5),
				stage("even", "sink", "memsink", 6),
				stage("rest", "sink", "memsink", 7),
			}, port("r", "small", "small"), port("r", "even", "even"), port("r", "rest", "rest"), edge("src", "r"))
			runOK(t, env, p)
			var wantSmall, wantEven, wantRest int
			for id := 0; id < 100; id++ {
				small, even := id%100 < 10, id%2 == 0
				switch {
				case mode == "first" && small:
					wantSmall++
				case mode == "first" && even:
					wantEven++
				case mode == "all" && (small || even):
					if small {
						wantSmall++
					}
					if even {
						wantEven++
					}
				default:
					wantRest++
				}
			}
			got := [3]int{len(env.output("small")), len(env.output("even")), len(env.output("rest"))}
			if got != [3]int{wantSmall, wantEven, wantRest} {
				t.Fatalf("got %v, want %v", got, [3]int{wantSmall, wantEven, wantRest})
			}
		})
	}
}

// badExpr fails for ids divisible by 5.
const badExpr = "id % (id % 5)"

func TestPolicyFail(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(100))),
		stage("m", "transform", "map", 10, withExprs(plan.AssignExpr, "x", badExpr)),
		stage("out", "sink", "memsink", 20),
	}, edge("src", "m"), edge("m", "out"))
	err := env.run(t.Context(), p, t.TempDir())
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "m" || se.At != "test.pipe:11" {
		t.Fatalf("got %v, want a StageError of stage m at test.pipe:11", err)
	}
	if !strings.Contains(err.Error(), `test.pipe:11: stage "m"`) {
		t.Fatalf("message %q does not name the stage and line", err)
	}
}

func TestPolicySkip(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(100))),
		stage("m", "transform", "map", 10, withExprs(plan.AssignExpr, "x", badExpr), onError(&plan.ErrorPolicy{Action: "skip"})),
		stage("out", "sink", "memsink", 20),
	}, edge("src", "m"), edge("m", "out"))
	var last Snapshot
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := Run(ctx, p, &Config{Registry: env.reg, StateDir: t.TempDir(), Status: func(s Snapshot) { last = s }})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(env.output("out")); n != 80 {
		t.Fatalf("got %d records, want 80", n)
	}
	if st := last.Stages[1]; st.Name != "m" || st.Errors != 20 || st.In != 100 || st.Out != 80 {
		t.Fatalf("stage status %+v", st)
	}
}

func TestPolicyDeadLetter(t *testing.T) {
	env := newTestEnv(t)
	clock := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(40)), attr("bad", ival(10)),
			onError(&plan.ErrorPolicy{Action: "dead_letter", Target: "dlq"})),
		stage("m", "transform", "map", 10, tasks(2), withExprs(plan.AssignExpr, "x", badExpr),
			onError(&plan.ErrorPolicy{Action: "dead_letter", Target: "dlq"})),
		stage("out", "sink", "memsink", 20, attr("reject", ival(7)),
			onError(&plan.ErrorPolicy{Action: "retry", Max: 2, Backoff: int64(time.Millisecond),
				Then: &plan.ErrorPolicy{Action: "dead_letter", Target: "dlq"}})),
		stage("dlq", "sink", "memsink", 30),
	}, edge("src", "m"), edge("m", "out"), dlqEdge("src", "dlq"), dlqEdge("m", "dlq"), dlqEdge("out", "dlq"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := Run(ctx, p, &Config{Registry: env.reg, StateDir: t.TempDir(), Now: func() time.Time { return clock }}); err != nil {
		t.Fatal(err)
	}
	byStage := map[string][]map[string]any{}
	for _, r := range env.output("dlq") {
		m := r.Value.(map[string]any)
		byStage[m["stage"].(string)] = append(byStage[m["stage"].(string)], m)
		if m["time"] != "2024-05-01T12:00:00Z" {
			t.Fatalf("envelope time %v", m["time"])
		}
		src := m["source"].(map[string]any)
		if src["source"] != "src" || src["partition"] != "p0" || src["offset"] != r.Pos.Offset {
			t.Fatalf("envelope source %v for %v", src, r.Pos)
		}
	}
	// offsets 9, 19, 29, 39 are malformed
	if got := byStage["src"]; len(got) != 4 || got[0]["original"] != "{bad 9" || got[0]["at"] != "test.pipe:1" ||
		!strings.Contains(got[0]["error"].(string), "unexpected end of JSON input") {
		t.Fatalf("source envelopes %v", got)
	}
	// ids 0, 5, ..., 35 minus the malformed ones fail in m
	if got := byStage["m"]; len(got) != 8 || got[0]["at"] != "test.pipe:11" || got[0]["original"].(map[string]any)["id"] != int64(0) {
		t.Fatalf("map envelopes %v", got)
	}
	// ids 6, 13, 20, 27, 34 are rejected by the sink (none failed earlier)
	var ids []int64
	for _, m := range byStage["out"] {
		ids = append(ids, m["original"].(map[string]any)["id"].(int64))
		if m["at"] != "test.pipe:20" || !strings.Contains(m["error"].(string), "rejected") {
			t.Fatalf("sink envelope %v", m)
		}
	}
	if fmt.Sprint(ids) != "[6 13 27 34]" {
		t.Fatalf("sink rejected %v", ids)
	}
	if n := len(env.output("out")); n != 40-4-8-len(ids) {
		t.Fatalf("out holds %d records", n)
	}
}

func TestPolicyRetry(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(30))),
		stage("u", "transform", "upper", 5, onError(&plan.ErrorPolicy{Action: "retry", Max: 3, Backoff: int64(time.Millisecond),
			Then: &plan.ErrorPolicy{Action: "skip"}})),
		stage("out", "sink", "memsink", 20, attr("fail_writes", ival(2)),
			onError(&plan.ErrorPolicy{Action: "retry", Max: 3, Backoff: int64(time.Millisecond)})),
	}, edge("src", "u"), edge("u", "out"))
	runOK(t, env, p)
	if n := len(env.output("out")); n != 29 {
		t.Fatalf("got %d records, want 29 (u13 skipped after retries, batch failures retried)", n)
	}

	env = newTestEnv(t)
	p.Stages[2].Attrs["fail_writes"] = ival(10)
	err := env.run(t.Context(), p, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "temporarily unavailable") || !strings.Contains(err.Error(), `stage "out"`) {
		t.Fatalf("got %v, want the sink's error once retries ran out", err)
	}
}

type recHandler struct {
	log []string
}

func (h *recHandler) batch(_ context.Context, b []stdlib.Record) error {
	h.log = append(h.log, b[0].Pos.Partition)
	return nil
}
func (h *recHandler) barrier(_ context.Context, b *barrier) error {
	h.log = append(h.log, fmt.Sprintf("barrier%d:%d", b.id, len(b.pos)))
	return nil
}
func (h *recHandler) end(context.Context) error { h.log = append(h.log, "end"); return nil }

func TestBarrierAlignment(t *testing.T) {
	r := &run{cfg: Config{BatchSize: 4}}
	r.recycler = stdlib.NewRecycler(4)
	ins := []chan message{make(chan message, 16), make(chan message, 16)}
	batch := func(from int, name string) message {
		return message{from: from, batch: []stdlib.Record{{Pos: stdlib.Position{Partition: name}}}}
	}
	bar := func(from int, id uint64, part string) message {
		return message{from: from, barrier: &barrier{id: id, pos: []stdlib.Position{{Source: "s", Partition: part, Offset: int64(id)}}}}
	}
	// Sender 0 runs two checkpoints ahead of sender 1's first barrier.
	for _, m := range []message{batch(0, "a1"), bar(0, 1, "A"), batch(0, "a2"), bar(0, 2, "A"), batch(0, "a3"), {from: 0, eos: true}} {
		ins[0] <- m
	}
	h := &recHandler{}
	done := make(chan error, 1)
	go func() { done <- r.receive(t.Context(), ins, h) }()
	for _, m := range []message{batch(1, "b1"), bar(1, 1, "B"), batch(1, "b2"), bar(1, 2, "B"), {from: 1, eos: true}} {
		ins[1] <- m
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Between barriers the senders interleave freely; nothing crosses one.
	got := strings.Join(h.log, " ")
	var segs []string
	for _, seg := range strings.Split(got, "barrier") {
		f := strings.Fields(seg)
		if len(f) > 0 && strings.Contains(f[0], ":") {
			f = f[1:]
		}
		slices.Sort(f)
		segs = append(segs, strings.Join(f, " "))
	}
	want := []string{"a1 b1", "a2 b2", "a3 end"}
	if !slices.Equal(segs, want) || !strings.Contains(got, "barrier1:2") || !strings.Contains(got, "barrier2:2") {
		t.Fatalf("got %s", got)
	}
}

// TestCrashRecovery fails the run at many points (a sink error stops the
// run without a final checkpoint; sinks lose what they did not make
// durable), restarts it each time, and checks that the exactly-once sinks
// end with every record exactly once, in order, and the at-least-once sink
// with every record at least once.
func TestCrashRecovery(t *testing.T) {
	// memsink_start finishes its checkpoints while it goes on writing.
	for _, snk := range []string{"memsink", "memsink_start"} {
		t.Run(snk, func(t *testing.T) { testCrashRecovery(t, snk) })
	}
}

func testCrashRecovery(t *testing.T, snk string) {
	env := newTestEnv(t)
	dir := t.TempDir()
	const parts, count = 3, 400
	mk := func(crashA, crashB int) *plan.Plan {
		return newPlan(time.Millisecond, []*plan.Stage{
			stage("src", "source", "mem", 1, tasks(2), attr("partitions", ival(parts)), attr("count", ival(count)), attr("batch", ival(25))),
			stage("m", "transform", "map", 2, tasks(3), withExprs(plan.AssignExpr, "region", `"EU"`)),
			stage("a", "sink", snk, 3, tasks(2), attr("exactly", bval(true)), attr("crash_at", ival(int64(crashA)))),
			stage("b", "sink", snk, 4, attr("exactly", bval(true)), attr("crash_at", ival(int64(crashB)))),
			stage("c", "sink", "memsink", 5),
		}, edge("src", "m"), edge("m", "a"), edge("m", "b"), edge("m", "c"))
	}
	crashes := 0
	for i := 1; ; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		crashA, crashB := (i*7)%23+2, (i*11)%29+2
		if i > 30 {
			crashA, crashB = 0, 0
		}
		err := env.run(ctx, mk(crashA, crashB), dir)
		cancel()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "simulated crash") {
			t.Fatal(err)
		}
		crashes++
		if i > 200 {
			t.Fatal("run never completed")
		}
	}
	if crashes < 3 {
		t.Fatalf("only %d crashes: the test does not exercise recovery", crashes)
	}
	for _, name := range []string{"a", "b"} {
		got := offsetsByPart(env.output(name))
		for p := 0; p < parts; p++ {
			offs := got[fmt.Sprintf("p%d", p)]
			if len(offs) != count {
				t.Logf("%v", offs)
				t.Fatalf("sink %s partition p%d: %d records, want %d", name, p, len(offs), count)
			}
			for i, off := range offs {
				if off != int64(i) {
					t.Fatalf("sink %s partition p%d: record %d has offset %d", name, p, i, off)
				}
			}
		}
	}
	seen := map[stdlib.Position]bool{}
	for _, r := range env.output("c") {
		seen[r.Pos] = true
	}
	if len(seen) != parts*count {
		t.Fatalf("at-least-once sink saw %d distinct records, want %d", len(seen), parts*count)
	}
	st, _ := state.Open(dir)
	cp, err := st.Load()
	if err != nil || cp == nil {
		t.Fatalf("no checkpoint stored: %v", err)
	}
	for p := 0; p < parts; p++ {
		if pos, _ := cp.Lookup("src", fmt.Sprintf("p%d", p)); pos.Offset != count-1 {
			t.Fatalf("stored position of p%d is %d", p, pos.Offset)
		}
	}
	t.Logf("%d crashes, %d checkpoints", crashes, cp.ID)
}

// TestShutdown cancels an endless run: it must stop reading, drain, take a
// final checkpoint covering everything written and return nil in time,
// leaving no goroutine behind.
func TestShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	env := newTestEnv(t)
	dir := t.TempDir()
	p := newPlan(20*time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, tasks(2), attr("partitions", ival(4)), attr("endless", bval(true)),
			attr("delay", dur(100*time.Microsecond))),
		stage("f", "transform", "filter", 2, tasks(2), withExprs(plan.WhereExpr, "", "amount > 10")),
		stage("out", "sink", "memsink", 3, attr("exactly", bval(true))),
	}, edge("src", "f"), edge("f", "out"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- env.run(ctx, p, dir) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop within 10s of cancellation")
	}
	out := env.output("out")
	if len(out) == 0 {
		t.Fatal("nothing written")
	}
	checkOrdered(t, out)
	st, _ := state.Open(dir)
	cp, _ := st.Load()
	last := map[string]int64{}
	for _, r := range out {
		last[r.Pos.Partition] = r.Pos.Offset
	}
	for part := range last {
		pos, ok := cp.Lookup("src", part)
		off := pos.Offset
		if !ok || off < last[part] {
			t.Fatalf("final checkpoint holds %s at %d, output reaches %d", part, off, last[part])
		}
		if env.commits["src/"+part] != off {
			t.Fatalf("committed %d for %s, checkpoint holds %d", env.commits["src/"+part], part, off)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left (had %d):\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestMapInPlace(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(100))),
		stage("f", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "id >= 10")),
		stage("m", "transform", "map", 3, withExprs(plan.AssignExpr, "x", "amount * 2", "who", "user"),
			func(s *plan.Stage) { s.Keep = []string{"id", "user", "amount"}; s.Drop = []string{"amount"} }),
		stage("out", "sink", "memsink", 4),
	}, edge("src", "f"), edge("f", "m"), edge("m", "out"))
	runOK(t, env, p)
	out := env.output("out")
	if len(out) != 90 {
		t.Fatalf("got %d records", len(out))
	}
	for _, r := range out {
		m := r.Value.(map[string]any)
		id := m["id"].(int64)
		want := map[string]any{"id": id, "user": fmt.Sprintf("u%d", id), "x": (float64(id%100) + 0.5) * 2, "who": fmt.Sprintf("u%d", id)}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Fatalf("got %v, want %v", m, want)
		}
	}
}

func TestExclusive(t *testing.T) {
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1),
		stage("f", "transform", "filter", 2, withExprs(plan.WhereExpr, "", "true")),
		stage("m1", "transform", "map", 3),
		stage("m2", "transform", "map", 4),
		stage("m3", "transform", "map", 5),
		stage("a", "sink", "memsink", 6),
		stage("b", "sink", "memsink", 7),
	}, edge("src", "f"), edge("f", "m1"), edge("m1", "m2"), edge("m1", "m3"), edge("m2", "a"), edge("m3", "b"))
	env := newTestEnv(t)
	stages, err := buildGraph(p, env.reg, 1, time.Now, runParams{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, s := range stages {
		got[s.st.Name] = s.exclusive
	}
	want := map[string]bool{"src": false, "f": true, "m1": true, "m2": false, "m3": false, "a": true, "b": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("exclusive: got %v, want %v", got, want)
	}
}

// TestPartitionBy spreads records over sink tasks by a field: records with
// one value of it go to one task, in order.
func TestPartitionBy(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("partitions", ival(2)), attr("count", ival(300))),
		stage("out", "sink", "memsink", 2, tasks(3), func(s *plan.Stage) { s.PartitionBy = "part" }),
	}, edge("src", "out"))
	runOK(t, env, p)
	if n := len(env.output("out")); n != 600 {
		t.Fatalf("got %d records", n)
	}
	checkOrdered(t, env.output("out"))
}

// TestSinkAttrs: every := attribute of a sink is evaluated per record into
// Record.Attrs, in the order of Config.Exprs, whatever its name; a record
// whose attribute fails goes through the stage's error policy.
func TestSinkAttrs(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(20))),
		stage("out", "sink", "memsink", 2, withExprs(plan.AttrExpr,
			"subject", `"orders." + part + "." + user`, "weight", "100 % (7 - id)"),
			onError(&plan.ErrorPolicy{Action: "skip"})),
	}, edge("src", "out"))
	runOK(t, env, p)
	out := env.output("out")
	if len(out) != 19 {
		t.Fatalf("got %d records, want 19 (id 7 divides by zero)", len(out))
	}
	subject, weight := env.sink("out").cfg.ExprIndex("subject"), env.sink("out").cfg.ExprIndex("weight")
	for _, r := range out {
		id := r.Value.(map[string]any)["id"].(int64)
		s, _ := r.Attr(subject)
		w, _ := r.Attr(weight)
		if s != fmt.Sprintf("orders.p0.u%d", id) || w != 100%(7-id) || r.Key != nil {
			t.Fatalf("record %d: subject %v, weight %v, key %v", id, s, w, r.Key)
		}
	}
	if i := env.sink("out").cfg.ExprIndex("key"); i != -1 {
		t.Errorf("ExprIndex of an attribute not set per record = %d", i)
	}
}

// TestIdleSourceDoesNotBlockCheckpoints: one source blocks in Read for the
// whole run; checkpoints still complete for the other.
func TestIdleSourceDoesNotBlockCheckpoints(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(5*time.Millisecond, []*plan.Stage{
		stage("busy", "source", "mem", 1, attr("endless", bval(true)), attr("delay", dur(time.Millisecond))),
		stage("quiet", "source", "mem", 2, attr("idle", bval(true))),
		stage("out", "sink", "memsink", 3, attr("exactly", bval(true))),
	}, edge("busy", "out"), edge("quiet", "out"))
	ctx, cancel := context.WithCancel(t.Context())
	done, state := make(chan error, 1), t.TempDir()
	go func() { done <- env.run(ctx, p, state) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := env.sink("out")
		st.mu.Lock()
		n := len(st.cps)
		st.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d checkpoints in 10s with an idle source", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(env.output("out")) == 0 {
		t.Fatal("nothing written")
	}
}

// TestQuietInputCheckpoints: input that stops coming without ending is
// checkpointed without waiting for the (hour-long) interval.
func TestQuietInputCheckpoints(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Hour, []*plan.Stage{
		stage("in", "source", "mem", 1, attr("count", ival(50)), attr("batch", ival(10)), attr("hold", bval(true))),
		stage("out", "sink", "memsink", 2, attr("exactly", bval(true))),
	}, edge("in", "out"))
	runUntilCheckpoint(t, env, p, "covering the 50 records read", func(cps []stdlib.Checkpoint) bool {
		n := len(cps)
		return n > 0 && len(cps[n-1].Positions) == 1 && cps[n-1].Positions[0].Offset == 49
	})
	if n := len(env.output("out")); n != 50 {
		t.Fatalf("out holds %d records, want 50", n)
	}
}

// runUntilCheckpoint runs p until the checkpoints sink "out" took satisfy
// done, failing after 30 s; what says what is awaited.
func runUntilCheckpoint(t *testing.T, env *testEnv, p *plan.Plan, what string, done func([]stdlib.Checkpoint) bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ended, state := make(chan error, 1), t.TempDir()
	go func() { ended <- env.run(ctx, p, state) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := env.sink("out")
		st.mu.Lock()
		ok := done(st.cps)
		st.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint %s within 30 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-ended; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestQuietInputWaitsForSources reads batches slower than the coordinator
// looks for quiet input (a twentieth of the one-hour interval, 250 ms):
// between two batches the input is still for a look or more, but the
// source is still working through it, so the first checkpoint comes once
// it waits for input after its last batch. "mem" cannot tell whether it is
// caught up: a Read blocked for 700 ms is not yet quiet (four looks are).
// "memcaught" can: a Read blocked for 1.5 s does not make it quiet while
// records are left.
func TestQuietInputWaitsForSources(t *testing.T) {
	for _, tc := range []struct {
		source string
		delay  time.Duration
	}{{"mem", 700 * time.Millisecond}, {"memcaught", 1500 * time.Millisecond}} {
		t.Run(tc.source, func(t *testing.T) {
			env := newTestEnv(t)
			p := newPlan(time.Hour, []*plan.Stage{
				stage("in", "source", tc.source, 1, attr("count", ival(20)), attr("batch", ival(10)), attr("hold", bval(true)),
					attr("delay", dur(tc.delay))),
				stage("out", "sink", "memsink", 2, attr("exactly", bval(true))),
			}, edge("in", "out"))
			var first int64 = -1 // the offset the first checkpoint covers
			runUntilCheckpoint(t, env, p, "at all", func(cps []stdlib.Checkpoint) bool {
				for _, cp := range cps {
					if len(cp.Positions) == 1 {
						first = cp.Positions[0].Offset
						return true
					}
				}
				return false
			})
			if first != 19 {
				t.Fatalf("the first checkpoint covers offset %d, want 19 (the last record): it came while the source was busy", first)
			}
		})
	}
}

// TestCrashRecoveryDeadLetter crashes runs whose malformed records go to an
// exactly-once dead-letter sink: after the restarts the dead-letter sink
// holds each malformed record once, the main sink each good record once.
func TestCrashRecoveryDeadLetter(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	const count, bad = 500, 7
	for i := 1; ; i++ {
		crash := (i*5)%17 + 2
		if i > 25 {
			crash = 0
		}
		p := newPlan(time.Millisecond, []*plan.Stage{
			stage("src", "source", "mem", 1, attr("partitions", ival(2)), attr("count", ival(count)), attr("batch", ival(20)), attr("bad", ival(bad)),
				onError(&plan.ErrorPolicy{Action: "dead_letter", Target: "dlq"})),
			stage("out", "sink", "memsink", 2, attr("exactly", bval(true)), attr("crash_at", ival(int64(crash)))),
			stage("dlq", "sink", "memsink", 3, attr("exactly", bval(true))),
		}, edge("src", "out"), dlqEdge("src", "dlq"))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := env.run(ctx, p, dir)
		cancel()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "simulated crash") || i > 100 {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]func(int64) bool{
		"out": func(off int64) bool { return off%bad != bad-1 },
		"dlq": func(off int64) bool { return off%bad == bad-1 },
	} {
		got := offsetsByPart(env.output(name))
		for _, part := range []string{"p0", "p1"} {
			var exp []int64
			for off := int64(0); off < count; off++ {
				if want(off) {
					exp = append(exp, off)
				}
			}
			if fmt.Sprint(got[part]) != fmt.Sprint(exp) {
				t.Fatalf("sink %s partition %s:\n got %v\nwant %v", name, part, got[part], exp)
			}
		}
	}
}
