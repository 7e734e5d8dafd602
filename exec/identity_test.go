package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
)

// logBuf is a concurrency-safe log destination.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestIdentityChange runs a pipeline three times over partitions whose
// offsets restart: the second run reads another incarnation (a new broker
// reusing the topic name, a replaced file) with the same offsets. Its
// records must all be written, with a warning naming both identities, and
// a third run over that incarnation must write nothing again, saying why.
func TestIdentityChange(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	mk := func(identity string) *plan.Plan {
		return newPlan(time.Millisecond, []*plan.Stage{
			stage("src", "source", "mem", 1, tasks(2), attr("partitions", ival(3)), attr("count", ival(100)), attr("batch", ival(30)), attr("identity", sval(identity))),
			stage("out", "sink", "memsink", 2, tasks(2), attr("exactly", bval(true))),
		}, edge("src", "out"))
	}
	run := func(identity string) string {
		t.Helper()
		var logs logBuf
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cfg := &Config{Registry: env.reg, StateDir: dir, BatchSize: 64, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		if err := Run(ctx, mk(identity), cfg); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}

	run("cluster-A")
	if n := len(env.output("out")); n != 300 {
		t.Fatalf("first run wrote %d records, want 300", n)
	}
	logs := run("cluster-A")
	if n := len(env.output("out")); n != 300 {
		t.Fatalf("a rerun over the same input wrote %d records, want none", n-300)
	}
	_ = logs

	logs = run("cluster-B")
	got := offsetsByPart(env.output("out"))
	for _, p := range []string{"p0", "p1", "p2"} {
		if len(got[p]) != 200 {
			t.Fatalf("partition %s: %d records after the new incarnation, want 200 (100 of each)", p, len(got[p]))
		}
	}
	for _, want := range []string{"stored position not applied", "stored_identity=cluster-A", "identity=cluster-B", `held_by="the state store"`, `held_by="sink \"out\""`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	st, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := st.Load()
	st.Close()
	for _, p := range []string{"p0", "p1", "p2"} {
		if pos, _ := cp.Lookup("src", p); pos.Offset != 99 || pos.Identity != "cluster-B" {
			t.Fatalf("stored position of %s: %+v", p, pos)
		}
	}
	for _, h := range env.sink("out").held {
		for _, pos := range h {
			if pos.Identity != "cluster-B" {
				t.Fatalf("sink holds %+v", pos)
			}
		}
	}

	// The state store lost (deleted by hand): the sink's positions still
	// hold, so nothing is written twice, and the log says so.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	clear(env.commits) // what the source committed is forgotten with the store
	logs = run("cluster-B")
	if n := len(env.output("out")); n != 600 {
		t.Fatalf("run without a state store wrote %d records again", n-600)
	}
	if !strings.Contains(logs, "dropped replayed records the sink already holds") || strings.Contains(logs, "not applied") {
		t.Errorf("log:\n%s", logs)
	}

	// A partition that never resumes (a queue) gets a session identity
	// each run: its records are all written, and no warning says that
	// the positions held for it are not applied.
	logs = run(stdlib.SessionIdentity())
	if n := len(env.output("out")); n != 900 {
		t.Fatalf("a session's run wrote %d records, want 300", n-600)
	}
	if strings.Contains(logs, "not applied") {
		t.Errorf("a session identity was warned about:\n%s", logs)
	}
}

// TestStoredPositionsListed: a source's Resumer lists the positions stored
// for its partitions, by the state store and by each exactly-once sink it
// feeds, with their identities.
func TestStoredPositionsListed(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	p := twoPartitionPlan()
	if err := env.run(t.Context(), p, dir); err != nil {
		t.Fatal(err)
	}
	if len(env.listed) != 0 {
		t.Fatalf("first run listed %v", env.listed)
	}
	if err := env.run(t.Context(), p, dir); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, pos := range env.listed {
		if pos.Source != "src" || pos.Offset != 9 || pos.Identity != "id-1" {
			t.Fatalf("listed %v", pos)
		}
		got[pos.Partition]++
	}
	if got["p0"] != 2 || got["p1"] != 2 || len(got) != 2 {
		t.Fatalf("listed %v: want p0 and p1 from the state store and the sink", env.listed)
	}
}

// TestStateDirLocked: a second run on a state directory in use fails at
// once with a clear error and takes nothing over.
func TestStateDirLocked(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	p := newPlan(time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("idle", bval(true))),
		stage("out", "sink", "memsink", 2),
	}, edge("src", "out"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- env.run(ctx, p, dir) }()
	for i := 0; ; i++ { // until the first run has locked the directory
		if b, _ := os.ReadFile(filepath.Join(dir, "lock")); len(b) > 0 {
			break
		}
		if i == 5000 {
			t.Fatal("the first run never locked its state directory")
		}
		time.Sleep(time.Millisecond)
	}
	short, stop := context.WithTimeout(t.Context(), 5*time.Second)
	defer stop()
	err := env.run(short, p, dir)
	if !errors.Is(err, state.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second run: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	again, stop2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer stop2()
	if err := env.run(again, p, dir); err != nil {
		t.Fatalf("run after the first ended: %v", err)
	}
}

// TestOffsets shows, sets and resets the positions of the state store and
// of a sink that keeps its own, and a run then follows them.
func TestOffsets(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	p := twoPartitionPlan()
	cfg := &Config{Registry: env.reg, StateDir: dir}
	if err := Run(t.Context(), p, cfg); err != nil {
		t.Fatal(err)
	}
	o, err := OpenOffsets(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	held, err := o.Positions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range held {
		got = append(got, fmt.Sprintf("%s %s@%d %s", h.Holder, h.Partition, h.Offset, h.Identity))
	}
	want := []string{"state store p0@9 id-1", "out p0@9 id-1", "state store p1@9 id-1", "out p1@9 id-1"}
	if !slices.Equal(got, want) {
		t.Fatalf("positions %q, want %q", got, want)
	}
	if err := Run(t.Context(), p, cfg); !errors.Is(err, state.ErrLocked) {
		t.Fatalf("a run while offsets are open: %v", err)
	}
	if err := o.Set(t.Context(), "src", "p0", 7); err != nil {
		t.Fatal(err)
	}
	if err := o.Reset(t.Context(), "src", []string{"p1"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Reset(t.Context(), "nope", nil); err == nil {
		t.Fatal("reset of an unknown source succeeded")
	}
	o.Close()
	clear(env.commits) // the source commits positions it committed before again
	before := len(env.output("out"))
	if err := Run(t.Context(), p, cfg); err != nil {
		t.Fatal(err)
	}
	again := offsetsByPart(env.output("out")[before:])
	if !slices.Equal(again["p0"], []int64{7, 8, 9}) || len(again["p1"]) != 10 {
		t.Fatalf("after set p0=7 and reset p1 the run wrote %v", again)
	}
}

// TestInstanceOffsets: the offsets of a pipeline run as several instances
// list each instance's store, marked with the instance and ordered by its
// index, beside the sink's positions once; Set and Reset change every
// store, also one that did not hold the partition.
func TestInstanceOffsets(t *testing.T) {
	env := newTestEnv(t)
	dirs := []string{t.TempDir(), t.TempDir()}
	p := twoPartitionPlan()
	if err := Run(t.Context(), p, &Config{Registry: env.reg, StateDir: dirs[0]}); err != nil {
		t.Fatal(err)
	}
	// The other instance held p0 only, further back.
	st, err := state.Open(dirs[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(state.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "src", Partition: "p0", Offset: 4, Identity: "id-1"}}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	stores := func() []InstanceState {
		return []InstanceState{
			{Instance: "x/10", Open: func() (state.Backend, error) { return state.Open(dirs[0]) }},
			{Instance: "x/2", Open: func() (state.Backend, error) { return state.Open(dirs[1]) }},
		}
	}
	show := func() []string {
		o, err := OpenInstanceOffsets(p, &Config{Registry: env.reg, StateDir: dirs[0]}, stores())
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		held, err := o.Positions(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range held {
			got = append(got, fmt.Sprintf("%s %s %s@%d", h.Holder, h.Instance, h.Partition, h.Offset))
		}
		return got
	}
	want := []string{"state store x/2 p0@4", "state store x/10 p0@9", "out  p0@9", "state store x/10 p1@9", "out  p1@9"}
	if got := show(); !slices.Equal(got, want) {
		t.Fatalf("positions %q, want %q", got, want)
	}
	o, err := OpenInstanceOffsets(p, &Config{Registry: env.reg, StateDir: dirs[0]}, stores())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Set(t.Context(), "src", "p1", 7); err != nil {
		t.Fatal(err)
	}
	if err := o.Reset(t.Context(), "src", []string{"p0"}); err != nil {
		t.Fatal(err)
	}
	o.Close()
	want = []string{"state store x/2 p1@6", "state store x/10 p1@6", "out  p1@6"}
	if got := show(); !slices.Equal(got, want) {
		t.Fatalf("after set p1=7 and reset p0: positions %q, want %q", got, want)
	}
}

// eo makes a memsink an exactly-once sink that keeps its positions.
func eo(s *plan.Stage) {
	s.Delivery = string(stdlib.ExactlyOnce)
	attr("exactly", bval(true))(s)
}

// TestNewSinkTarget: an exactly-once sink whose target is new (it holds
// nothing, here its store is emptied between runs) gets every record
// again, though the state store has read them all; a sink that holds them
// writes nothing twice.
func TestNewSinkTarget(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	p := newPlan(time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("partitions", ival(2)), attr("count", ival(50))),
		stage("a", "sink", "memsink", 2, tasks(2), eo),
		stage("b", "sink", "memsink", 3, eo),
	}, edge("src", "a"), edge("src", "b"))
	var logs logBuf
	cfg := &Config{Registry: env.reg, StateDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := Run(t.Context(), p, cfg); err != nil {
		t.Fatal(err)
	}
	a := env.sink("a")
	a.mu.Lock()
	a.durable, a.held = nil, nil // a new table, a deleted output with its sidecar
	a.mu.Unlock()
	clear(env.commits)
	if err := Run(t.Context(), p, cfg); err != nil {
		t.Fatal(err)
	}
	if n := len(env.output("a")); n != 100 {
		t.Errorf("the sink with a new target got %d records, want 100", n)
	}
	if n := len(env.output("b")); n != 100 {
		t.Errorf("the sink that held everything has %d records, want 100", n)
	}
	if !strings.Contains(logs.String(), "an exactly-once sink holds nothing of a partition read before") {
		t.Errorf("no warning:\n%s", logs.String())
	}
}

// twoPartitionPlan reads two partitions of 10 records, identity id-1, into
// a sink that keeps its positions.
func twoPartitionPlan() *plan.Plan {
	return newPlan(time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("partitions", ival(2)), attr("count", ival(10)), attr("identity", sval("id-1"))),
		stage("out", "sink", "memsink", 2, attr("exactly", bval(true))),
	}, edge("src", "out"))
}
