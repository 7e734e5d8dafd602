package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	osexec "os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/stdlib"
)

// TestServerRestart runs examples/kafka_to_kafka.pipe, exactly_once and
// at_least_once side by side, against a `pipe broker` that keeps its data
// on disk, and takes the broker down twice while input arrives: for 5 s
// each time, killed (SIGKILL) the first time and stopped (SIGTERM) the
// second, then started again. Neither `pipe run` may exit. After each
// restart, once the output caught up, a read_committed consumer must read
// every record produced so far, exactly once (at_least_once: at least
// once), each exactly as the pipeline makes it. Set PIPE_KILLTEST=1 to run
// it; PIPE_KILLTEST_RECORDS scales it.
func TestServerRestart(t *testing.T) {
	n, _ := proctest.KillTest(t, 40000, 2)
	h := newHarness(t)
	broker := proctest.StartDurableBroker(t, h.bin, 4, filepath.Join(h.dir, "broker"))
	h.brokers = broker.Addr
	in := uniq("restart-in")
	newTopic(t, h.brokers, in, 4)

	type run struct {
		delivery, out string
		cmd           *osexec.Cmd
		exited        chan error
	}
	var runs []*run
	for _, delivery := range []string{"exactly_once", "at_least_once"} {
		r := &run{delivery: delivery, out: uniq("restart-out-" + delivery), exited: make(chan error, 1)}
		newTopic(t, h.brokers, r.out, 4)
		env := h.env(h.brokers, in, r.out, uniq("restart"))
		r.cmd = h.start(t, h.pipeline(t, delivery), env, filepath.Join(h.dir, "state-"+delivery), delivery+": ")
		go func() { r.exited <- r.cmd.Wait() }()
		runs = append(runs, r)
	}

	check := func(written int) {
		want := expectedOutput(t, written)
		for _, r := range runs {
			select {
			case err := <-r.exited:
				t.Fatalf("%s: pipe run exited during a broker outage: %v", r.delivery, err)
			default:
			}
			got := readOutput(t, h.brokers, r.out, len(want), time.Minute)
			compareOutput(t, fmt.Sprintf("%s, %d events in", r.delivery, written), r.delivery == "exactly_once", want, got)
		}
	}
	broker.OutagesDuring(in, n, 5*time.Second, check, syscall.SIGKILL, syscall.SIGTERM)
	for _, r := range runs {
		r.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-r.exited; err != nil {
			t.Errorf("%s: pipe run: %v", r.delivery, err)
		}
	}
}

// expectedOutput returns, by id, the output records of the example for
// input events 0 to n-1, as encoding/json decodes them.
func expectedOutput(t *testing.T, n int) map[int64]map[string]any {
	want := map[int64]map[string]any{}
	for i := range n {
		var m map[string]any
		if err := json.Unmarshal([]byte(proctest.Event(i)), &m); err != nil {
			t.Fatal(err)
		}
		if m["amount"].(float64) <= 50 {
			continue
		}
		m["customer"], m["region"] = m["user"], "EU"
		delete(m, "user")
		want[int64(i)] = m
	}
	return want
}

// compareOutput checks every record read against want, whole: none
// missing, none unexpected or different, and with exactly, none doubled.
func compareOutput(t *testing.T, what string, exactly bool, want map[int64]map[string]any, got []stdlib.Record) {
	t.Helper()
	ids := make([]int64, 0, len(got))
	var wrong []error
	for _, r := range got {
		var m map[string]any
		if err := json.Unmarshal(r.Raw, &m); err != nil {
			t.Fatalf("%s: output record at %v: %v", what, r.Pos, err)
		}
		id := int64(m["id"].(float64))
		ids = append(ids, id)
		if w, ok := want[id]; ok && !reflect.DeepEqual(w, m) {
			wrong = append(wrong, fmt.Errorf("record at %v is %v, want %v", r.Pos, m, w))
		}
	}
	wantIDs := map[int64]bool{}
	for id := range want {
		wantIDs[id] = true
	}
	missing, doubled, extra := proctest.Tally(wantIDs, ids)
	t.Logf("%s: %d records expected, %d read, %d missing, %d doubled, %d unexpected, %d wrong",
		what, len(want), len(got), missing, doubled, extra, len(wrong))
	if missing > 0 || extra > 0 || len(wrong) > 0 || exactly && doubled > 0 {
		t.Fatalf("%s: %d missing, %d doubled, %d unexpected, %d wrong: %v",
			what, missing, doubled, extra, len(wrong), errors.Join(wrong[:min(len(wrong), 5)]...))
	}
}
