package kafka

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/stdlib"
)

// TestKill runs, through proctest.Kill, examples/kafka_to_kafka.pipe under `pipe run` against
// `pipe broker`, SIGKILLs it at random moments (some runs paused with
// SIGSTOP past the group's session timeout first), restarts it, and checks
// with a read_committed consumer that every expected record arrived exactly
// once (at_least_once: at least once). A second, shorter round does the
// same against a new broker with the same topic and group names, on the
// same state directory: the positions stored in the first round point into
// the first broker's topics and must not be applied. Set PIPE_KILLTEST=1
// to run it; PIPE_KILLTEST_RECORDS and PIPE_KILLTEST_KILLS scale it.
func TestKill(t *testing.T) {
	n, kills := proctest.KillTest(t, 100000, 20)
	h := newProcHarness(t)
	second := proctest.StartBroker(t, h.bin, 4)
	for _, delivery := range []string{"exactly_once", "at_least_once"} {
		t.Run(delivery, func(t *testing.T) {
			in, out, group := uniq("kill-in-"+delivery), uniq("kill-out-"+delivery), uniq("kill")
			state := filepath.Join(h.dir, "state-"+delivery)
			h.killRound(t, h.brokers, delivery, in, out, group, state, 0, n, kills)
			// As many records as before are there at the first start, so
			// that the stored positions are inside the new partitions
			// (beyond their end they would be reset as out of range).
			h.killRound(t, second, delivery, in, out, group, state, n, max(n/4, 1), max(kills/4, 2))
		})
	}
}

// killRound creates topics in and out on brokers and writes before events
// to in, then n more while pipe run (on state) is killed and restarted
// kills times (proctest.Kill), and checks the output.
func (h *procHarness) killRound(t *testing.T, brokers, delivery, in, out, group, state string, before, n, kills int) {
	newTopic(t, brokers, in, 4)
	newTopic(t, brokers, out, 4)
	if err := proctest.ProduceEvents(t.Context(), nil, brokers, in, 0, before, 0); err != nil {
		t.Fatal(err)
	}
	n += before
	want := proctest.KeptEvents(n)
	var got []stdlib.Record
	k := &proctest.Kill{
		Bin: h.bin, File: h.pipeline(t, delivery), State: state, Dir: h.root, Name: delivery, Kills: kills,
		Env:   []string{"KAFKA_BROKERS=" + brokers, "IN_TOPIC=" + in, "OUT_TOPIC=" + out, "GROUP=" + group},
		Pause: 1500 * time.Millisecond, Doubles: delivery != "exactly_once",
		// Input keeps arriving while pipe run is killed and restarted,
		// so that every kill lands in the middle of the stream.
		Produce: func() error {
			return proctest.ProduceEvents(context.Background(), nil, brokers, in, before, n, time.Duration(kills)*2500*time.Millisecond)
		},
		Progress: func() string {
			return fmt.Sprintf("input log end %d, output log end %d", logEnd(t, brokers, in), logEnd(t, brokers, out))
		},
		Complete: func(t *testing.T) { got = readOutput(t, brokers, out, len(want), 3*time.Minute) },
		Check: func(t *testing.T) proctest.Tallied {
			return tallyEvents(t, delivery, want, got, func(topic string, partition int, from, to int64) {
				dumpLog(t, brokers, topic, partition, from, to)
				again := readOutput(t, brokers, out, len(want), time.Minute)
				ids := make([]int64, 0, len(again))
				for _, r := range again {
					id, _ := r.Value.(map[string]any)["id"].(int64)
					ids = append(ids, id)
				}
				_, doubled, _ := proctest.Tally(want, ids)
				t.Logf("a second read_committed pass reads %d records, %d doubled", len(again), doubled)
			})
		},
	}
	k.Run(t)
}

// procHarness runs examples/kafka_to_kafka.pipe under `pipe run` processes
// against a `pipe broker`.
type procHarness struct {
	root, dir, bin, brokers string
	src                     []byte
}

// newProcHarness builds pipe and starts `pipe broker` with 4 partitions
// for auto-created topics and the extra flags given.
func newProcHarness(t *testing.T, brokerFlags ...string) *procHarness {
	h := newHarness(t)
	h.brokers = proctest.StartBroker(t, h.bin, 4, brokerFlags...)
	return h
}

// newHarness builds pipe; the caller starts the broker.
func newHarness(t *testing.T) *procHarness {
	h := &procHarness{root: proctest.ModuleRoot(t), dir: t.TempDir()}
	t.Chdir(h.root)
	h.bin = proctest.BuildPipe(t)
	var err error
	if h.src, err = os.ReadFile(filepath.Join(h.root, "examples", "kafka_to_kafka.pipe")); err != nil {
		t.Fatal(err)
	}
	return h
}

// pipeline writes the example with the given delivery and returns its path.
func (h *procHarness) pipeline(t *testing.T, delivery string) string {
	file := filepath.Join(h.dir, delivery+".pipe")
	text := strings.ReplaceAll(string(h.src), "exactly_once", delivery)
	// A killed member holds its partitions until its session times out:
	// keep that short so that restarts make progress.
	text = strings.Replace(text, "  start   = earliest\n", "  start   = earliest\n  session_timeout = 1s\n", 1)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func (h *procHarness) env(brokers, in, out, group string) []string {
	return append(os.Environ(), "KAFKA_BROKERS="+brokers, "IN_TOPIC="+in, "OUT_TOPIC="+out, "GROUP="+group)
}

// start starts `pipe run file` with its own state directory.
func (h *procHarness) start(t *testing.T, file string, env []string, state, prefix string) *osexec.Cmd {
	args := []string{"run", "-q", "--state-dir", state}
	if lvl := os.Getenv("PIPE_KILLTEST_LOG"); lvl != "" {
		args = append(args, "--log-level", lvl)
	}
	cmd := osexec.Command(h.bin, append(args, file)...)
	cmd.Env = env
	cmd.Dir = h.root
	cmd.Stderr = &proctest.LogWriter{T: t, Prefix: prefix}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// checkEvents checks the records read from the output against want: none
// missing or unexpected, none doubled for exactly_once.
func checkEvents(t *testing.T, delivery string, n int, want map[int64]bool, got []stdlib.Record, dump func(topic string, partition int, from, to int64)) {
	t.Helper()
	r := tallyEvents(t, delivery, want, got, dump)
	t.Logf("%s: %d records in, %d expected out, %d read, %d missing, %d doubled, %d unexpected",
		delivery, n, len(want), len(got), r.Missing, r.Doubled, r.Extra)
	if r.Missing > 0 || r.Extra > 0 || (delivery == "exactly_once" && r.Doubled > 0) {
		t.Fatalf("%s broken: %d missing, %d doubled, %d unexpected", delivery, r.Missing, r.Doubled, r.Extra)
	}
}

// tallyEvents checks that the records read from the output were
// transformed and tallies them against want; for exactly_once it logs
// where doubled records are and dumps the output log around them.
func tallyEvents(t *testing.T, delivery string, want map[int64]bool, got []stdlib.Record, dump func(topic string, partition int, from, to int64)) proctest.Tallied {
	t.Helper()
	ids := make([]int64, 0, len(got))
	for _, r := range got {
		m := r.Value.(map[string]any)
		id, _ := m["id"].(int64)
		ids = append(ids, id)
		if m["region"] != "EU" || m["customer"] == nil || m["user"] != nil {
			t.Fatalf("record not transformed: %v", m)
		}
	}
	missing, doubled, extra := proctest.Tally(want, ids)
	if doubled > 0 && delivery == "exactly_once" {
		at := map[int64][]stdlib.Position{}
		for _, r := range got {
			id, _ := r.Value.(map[string]any)["id"].(int64)
			at[id] = append(at[id], r.Pos)
		}
		shown := 0
		span := map[string][2]int64{} // output offsets the doubled records span
		for id, where := range at {
			if len(where) < 2 {
				continue
			}
			if shown < 10 {
				t.Logf("id %d read at %v", id, where)
				shown++
			}
			for _, p := range where {
				sp, ok := span[p.Partition]
				if !ok {
					sp = [2]int64{p.Offset, p.Offset}
				}
				span[p.Partition] = [2]int64{min(sp[0], p.Offset), max(sp[1], p.Offset)}
			}
		}
		if dump != nil {
			for part, sp := range span {
				topic, n, _ := parsePartKey(part)
				dump(topic, n, sp[0]-50, sp[1]+50)
			}
		}
	}
	return proctest.Tallied{Read: len(got), Missing: missing, Doubled: doubled, Extra: extra}
}

// logEnd returns the sum of the end offsets of topic's partitions.
func logEnd(t *testing.T, brokers, topic string) int64 {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr}
	var reqs []kafka.OffsetRequest
	for p := range 4 {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	res, err := cl.ListOffsets(t.Context(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return -1
	}
	var sum int64
	for _, po := range res.Topics[topic] {
		sum += po.LastOffset
	}
	return sum
}

// readOutput reads topic read_committed until want records arrived and no
// more come for a while, or until timeout.
func readOutput(t testing.TB, brokers, topic string, want int, timeout time.Duration) []stdlib.Record {
	src := openSource(t, config("check", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var got []stdlib.Record
	quiet := time.Time{}
	for ctx.Err() == nil {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		recs, err := src.Read(rctx)
		rcancel()
		if err != nil && ctx.Err() == nil && rctx.Err() == nil {
			t.Fatalf("read output: %v", err)
		}
		got = append(got, recs...)
		if len(recs) > 0 {
			quiet = time.Time{}
			continue
		}
		if len(got) >= want {
			if quiet.IsZero() {
				quiet = time.Now()
			} else if time.Since(quiet) > 3*time.Second {
				break // nothing more: no late duplicates either
			}
		}
	}
	return got
}
