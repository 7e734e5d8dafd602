package kafka

import (
	"errors"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestOffsetsThenRun runs examples/kafka_to_kafka.pipe (exactly_once, a
// consumer-group source: the sink resumes through Acquire) under `pipe
// run`, then changes its positions with `pipe offsets` and runs it again:
// after `set` of one input partition to offset 0, exactly that
// partition's records are written again; after `reset` of the source,
// every record is. A read_committed consumer counts each id in the output.
func TestOffsetsThenRun(t *testing.T) {
	h := newHarness(t)
	h.brokers = testBroker(t, devbroker.Options{})
	in, out := uniq("offsets-in"), uniq("offsets-out")
	newTopic(t, h.brokers, in, 4)
	newTopic(t, h.brokers, out, 4)
	const n = 2000
	if err := proctest.ProduceEvents(t.Context(), nil, h.brokers, in, 0, n, 0); err != nil {
		t.Fatal(err)
	}
	want := proctest.KeptEvents(n)
	file := h.pipeline(t, "exactly_once")
	env := h.env(h.brokers, in, out, uniq("offsets"))
	state := filepath.Join(h.dir, "state")

	// The kept ids of input partition 1.
	inP1 := map[int64]bool{}
	for _, r := range readOutputRaw(t, h.brokers, in, n) {
		if id := eventID(r); r.Pos.Partition == partKey(in, 1) && want[id] {
			inP1[id] = true
		}
	}
	if len(inP1) == 0 {
		t.Fatal("no kept record in input partition 1")
	}

	counts := func(total int) map[int64]int {
		t.Helper()
		c := map[int64]int{}
		for _, r := range readOutput(t, h.brokers, out, total, time.Minute) {
			c[eventID(r)]++
		}
		return c
	}
	run := func(total int) map[int64]int {
		t.Helper()
		cmd := h.start(t, file, env, state, "pipe run: ")
		c := counts(total)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("pipe run: %v", err)
		}
		return c
	}
	offsets := func(args ...string) string {
		t.Helper()
		cmd := osexec.Command(h.bin, append(append([]string{"offsets"}, args...), "--state-dir", state, file)...)
		cmd.Env, cmd.Dir = env, h.root
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pipe offsets %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	check := func(what string, got map[int64]int, times func(id int64) int) {
		t.Helper()
		bad := 0
		for id := range want {
			if got[id] != times(id) {
				if bad++; bad <= 5 {
					t.Errorf("%s: id %d written %d times, want %d", what, id, got[id], times(id))
				}
			}
		}
		if bad > 0 {
			t.Fatalf("%s: %d ids wrong", what, bad)
		}
	}

	check("first run", run(len(want)), func(int64) int { return 1 })
	if show := offsets("show"); !strings.Contains(show, " out ") {
		t.Fatalf("pipe offsets show names no position of sink out:\n%s", show)
	}

	offsets("set", "--source", "events", "--partition", partKey(in, 1), "--offset", "0")
	check("after set", run(len(want)+len(inP1)), func(id int64) int {
		if inP1[id] {
			return 2
		}
		return 1
	})

	offsets("reset", "--source", "events")
	check("after reset", run(2*len(want)+len(inP1)), func(id int64) int {
		if inP1[id] {
			return 3
		}
		return 2
	})
}

// readOutputRaw reads n records of topic from the start.
func readOutputRaw(t *testing.T, brokers, topic string, n int) []stdlib.Record {
	t.Helper()
	src := openSource(t, config("check", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	return readN(t, src, n)
}

func eventID(r stdlib.Record) int64 {
	id, _ := r.Value.(map[string]any)["id"].(int64)
	return id
}

// TestGroupOffsetsSetAndReset changes a group's committed offsets through
// the source's SetPositions (pipe offsets): refused while the group has a
// member; then set makes the next member start after the position set,
// and reset makes it start as start says.
func TestGroupOffsetsSetAndReset(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic, group := uniq("group"), uniq("g")
	newTopic(t, brokers, topic, 1)
	produce(t, brokers, topic, `{"n":0}`, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	cfg := config("in", brokers, map[string]any{"topic": topic, "group": group, "session_timeout": time.Second})
	first := func() string {
		t.Helper()
		src := openSource(t, cfg, nil)
		defer closeAll(t, src)
		return values(readN(t, src, 1), "n")[0]
	}
	store := func() stdlib.SourcePositionStore {
		src, err := SourceSpec.NewSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return src.(stdlib.SourcePositionStore)
	}

	src := openSource(t, cfg, nil)
	got := readN(t, src, 4)
	if err := src.Commit(t.Context(), []stdlib.Position{got[2].Pos}); err != nil {
		t.Fatal(err)
	}
	err := store().SetPositions(t.Context(), nil, nil)
	if !errors.Is(err, errMembers) {
		t.Fatalf("reset while the group has a member: %v, want a refusal", err)
	}
	closeAll(t, src)
	if n := first(); n != "3" {
		t.Fatalf("after commit of offset 2 read %s first, want 3", n)
	}

	set := []stdlib.Position{{Source: "in", Partition: partKey(topic, 0), Offset: 0}}
	if err := store().SetPositions(t.Context(), []string{partKey(topic, 0)}, set); err != nil {
		t.Fatalf("set: %v", err)
	}
	if n := first(); n != "1" {
		t.Fatalf("after set at offset 0 read %s first, want 1", n)
	}
	if err := store().SetPositions(t.Context(), nil, nil); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if n := first(); n != "0" {
		t.Fatalf("after reset read %s first, want 0 (start = earliest)", n)
	}
}
