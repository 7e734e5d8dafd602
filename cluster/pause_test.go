package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

func filesPipeline(name, in, out string) []byte {
	return fmt.Appendf(nil, `pipeline %s {
  delivery   = exactly_once
  checkpoint = 200ms
}

schema Line {
  id: int
}

source in: file {
  path   = %q
  format = json
  schema = Line
  follow = true
  poll   = 50ms
}

sink out: file {
  path     = %q
  delivery = exactly_once
}

in -> out
`, name, in, out)
}

// TestPauseAndOffsets: a paused pipeline stops reading and shows paused,
// also asked through a worker that is not the leader; its offsets change
// only while it is paused (409 before); setting its file's next offset to
// 0 makes the resumed instance read the file again, and its sink write it
// again, because the sink's positions changed too. The status sums the
// instance's counters and the worker running it serves its metrics
// labelled with the instance.
func TestPauseAndOffsets(t *testing.T) {
	addr := startDevBroker(t)
	dir := t.TempDir()
	ws := []*testWorker{
		startTestWorker(t, addr, "w1", filepath.Join(dir, "state1")),
		startTestWorker(t, addr, "w2", filepath.Join(dir, "state2")),
	}
	ctx := context.Background()
	hc := &http.Client{Timeout: 30 * time.Second}
	c := &Client{URL: ws[0].srv.URL, HTTP: hc}
	waitFor(t, 30*time.Second, "two workers", func() error {
		m, err := c.Workers(ctx)
		if err == nil && len(m.Members) != 2 {
			err = fmt.Errorf("%d members", len(m.Members))
		}
		return err
	})
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	appendLines(t, in, 0, 100)
	const name = "capipause"
	if _, err := c.Deploy(ctx, name, name+".pipe", filesPipeline(name, in, out)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the first records through", func() error {
		return exactlyOnce(fileIDs(t, out), 0, 100)
	})
	var st PipelineStatus
	waitFor(t, 10*time.Second, "the counters in the status", func() error {
		var err error
		if st, err = c.Status(ctx, name); err != nil {
			return err
		}
		if st.RecordsIn != 100 || st.RecordsOut != 100 || st.Instances[0].RecordsIn != 100 {
			return fmt.Errorf("records in %d, out %d", st.RecordsIn, st.RecordsOut)
		}
		return nil
	})

	// The metrics of the worker running it, labelled with the instance.
	var owner, other *testWorker
	for _, w := range ws {
		if w.w.cfg.ID == st.Instances[0].Worker {
			owner = w
		} else {
			other = w
		}
	}
	resp, err := hc.Get(owner.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `pipe_component_received_events_total{component="file",kind="source",pipe_instance="capipause/0",pipeline="capipause",stage="in",task="0"} 100`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics of the worker running the instance lack\n%s\n%s", want, metrics)
	}

	if _, err := c.ResetOffsets(ctx, name, "", nil); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("offsets reset of a running pipeline: %v, want 409", err)
	}
	// Paused through each worker: one of them forwards to the leader.
	for _, w := range ws {
		if err := (&Client{URL: w.srv.URL, HTTP: hc}).Pause(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the instance paused", func() error {
		st, err := (&Client{URL: other.srv.URL, HTTP: hc}).Status(ctx, name)
		if err == nil && (!st.Paused || st.Instances[0].State != StatePaused) {
			err = fmt.Errorf("paused %v, %+v", st.Paused, st.Instances[0].Status)
		}
		return err
	})
	appendLines(t, in, 100, 150)
	time.Sleep(time.Second)
	if got := fileIDs(t, out); len(got) != 100 {
		t.Errorf("a paused pipeline wrote: %d ids", len(got))
	}
	rep, err := c.Offsets(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var part string
	for _, p := range rep.Positions {
		if p.Holder == exec.StateHolder && p.Source == "in" && p.Next > 0 {
			part = p.Partition
		}
	}
	if part == "" {
		t.Fatalf("no position of the state store: %+v", rep.Positions)
	}
	zero := int64(0)
	rep, err = (&Client{URL: other.srv.URL, HTTP: hc}).SetOffsets(ctx, name, []OffsetChange{{Source: "in", Partition: part, Next: &zero}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Positions {
		if p.Source == "in" && p.Partition == part && p.Next != 0 {
			t.Errorf("after the change %s holds next offset %d, want 0", p.Holder, p.Next)
		}
	}
	if err := c.Resume(ctx, name); err != nil {
		t.Fatal(err)
	}
	// Read again from the start: ids 0..99 twice, the rest once.
	waitFor(t, 30*time.Second, "the file read again after the resume", func() error {
		got := fileIDs(t, out)
		for i := range 150 {
			want := 1
			if i < 100 {
				want = 2
			}
			if got[i] != want {
				return fmt.Errorf("id %d seen %d times, want %d", i, got[i], want)
			}
		}
		return nil
	})
	waitFor(t, 10*time.Second, "the instance running after the resume", func() error {
		st, err := c.Status(ctx, name)
		if err == nil && (st.Paused || st.Instances[0].State != StateRunning) {
			err = fmt.Errorf("paused %v, %+v", st.Paused, st.Instances[0].Status)
		}
		return err
	})
	if _, err := c.SetOffsets(ctx, name, []OffsetChange{{Source: "in", Partition: part, Next: &zero}}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("offsets change of a resumed pipeline: %v, want 409", err)
	}
}

// TestInstanceOffsets: the offsets of a pipeline of two instances are
// those of both instances' state stores, each position marked with its
// instance, beside its exactly-once sink's; a change applies to both
// stores (and the sink's), so the partition set to 0 is read again after
// the resume, whichever instance gets it, and a reset partition is gone
// from both. GET /pipelines sums the counters of both instances, also
// the one the answering worker does not run.
func TestInstanceOffsets(t *testing.T) {
	b, err := devbroker.Start(context.Background(), devbroker.Options{
		Topics: []devbroker.Topic{{Name: "cofsin", Partitions: 4}, {Name: "cofsout", Partitions: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	dir := t.TempDir()
	ws := []*testWorker{
		startTestWorker(t, b.Addr(), "w1", filepath.Join(dir, "state1")),
		startTestWorker(t, b.Addr(), "w2", filepath.Join(dir, "state2")),
	}
	ctx := context.Background()
	hc := &http.Client{Timeout: 60 * time.Second}
	c := &Client{URL: ws[0].srv.URL, HTTP: hc}
	const name = "cofsinst"
	if _, err := c.Deploy(ctx, name, name+".pipe", groupedPipeline(name, "cofsin", "cofsout", "exactly_once", b.Addr(), 2)); err != nil {
		t.Fatal(err)
	}
	waitTwoInstances(t, c, name)
	const n = 200
	produceSpread(t, b.Addr(), "cofsin", n)
	waitFor(t, 30*time.Second, "every record through", func() error {
		return exactlyOnce(readIDs(t, b.Addr(), "cofsout"), 0, n)
	})

	// The list sums both instances' counters, asked of either worker
	// (each runs one instance, and either may have read everything).
	for _, w := range ws {
		waitFor(t, 10*time.Second, "the counters of both instances in the list", func() error {
			all, err := (&Client{URL: w.srv.URL, HTTP: hc}).Pipelines(ctx)
			if err != nil {
				return err
			}
			if len(all) != 1 || all[0].RecordsIn < n || all[0].RecordsOut < n {
				return fmt.Errorf("list %+v", all)
			}
			return nil
		})
	}

	// The instances' stores, and the sink's: every partition's next
	// offset is n/4 in the sink and in a store, each store's positions
	// marked with its instance.
	type key struct{ holder, instance, partition string }
	held := func(rep exec.OffsetsReport) map[key]int64 {
		out := map[key]int64{}
		for _, p := range rep.Positions {
			if p.Source == "in" {
				out[key{p.Holder, p.Instance, p.Partition}] = p.Next
			}
		}
		return out
	}
	parts := []string{"cofsin/0", "cofsin/1", "cofsin/2", "cofsin/3"}
	waitFor(t, 30*time.Second, "the positions of both instances", func() error {
		rep, err := c.Offsets(ctx, name)
		if err != nil {
			return err
		}
		h := held(rep)
		for _, part := range parts {
			if h[key{"out", "", part}] != n/4 {
				return fmt.Errorf("sink holds %s at %d: %+v", part, h[key{"out", "", part}], rep.Positions)
			}
			held := 0
			for i := range 2 {
				id := InstanceID(name, i)
				if next, ok := h[key{exec.StateHolder, id, part}]; ok && next == n/4 {
					held++
				}
			}
			if held == 0 {
				return fmt.Errorf("no instance's store holds %s at %d: %+v", part, n/4, rep.Positions)
			}
		}
		return nil
	})

	if err := c.Pause(ctx, name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "both instances paused", func() error {
		st, err := c.Status(ctx, name)
		if err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.State != StatePaused {
				return fmt.Errorf("%s is %s", in.Instance, in.State)
			}
		}
		return nil
	})
	// Partition 1 read again from 0 on resume; partition 2 forgotten.
	zero := int64(0)
	rep, err := (&Client{URL: ws[1].srv.URL, HTTP: hc}).SetOffsets(ctx, name, []OffsetChange{{Source: "in", Partition: "cofsin/1", Next: &zero}})
	if err != nil {
		t.Fatal(err)
	}
	h := held(rep)
	for _, k := range []key{{exec.StateHolder, InstanceID(name, 0), "cofsin/1"}, {exec.StateHolder, InstanceID(name, 1), "cofsin/1"}, {"out", "", "cofsin/1"}} {
		if next, ok := h[k]; !ok || next != 0 {
			t.Errorf("after the change %+v holds next %d (held: %v), want 0", k, next, ok)
		}
	}
	if rep, err = c.ResetOffsets(ctx, name, "in", []string{"cofsin/2"}); err != nil {
		t.Fatal(err)
	}
	for k := range held(rep) {
		if k.partition == "cofsin/2" {
			t.Errorf("after the reset %+v still holds cofsin/2", k)
		}
	}
	// Read back from the offsets topic: the change is in both records,
	// also in the one of an instance that held nothing before.
	rep, err = c.Offsets(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	h = held(rep)
	for i := range 2 {
		id := InstanceID(name, i)
		if next, ok := h[key{exec.StateHolder, id, "cofsin/1"}]; !ok || next != 0 {
			t.Errorf("%s's store holds cofsin/1 at %d (held: %v), want 0", id, next, ok)
		}
		if _, ok := h[key{exec.StateHolder, id, "cofsin/2"}]; ok {
			t.Errorf("%s's store still holds cofsin/2", id)
		}
	}

	if err := c.Resume(ctx, name); err != nil {
		t.Fatal(err)
	}
	// Partition 1 (ids 1, 5, 9, …) read again; partition 2 starts as
	// start (earliest) says: read again too; 0 and 3 not.
	waitFor(t, 30*time.Second, "partitions 1 and 2 read again", func() error {
		got := readIDs(t, b.Addr(), "cofsout")
		for i := range n {
			want := 1
			if i%4 == 1 || i%4 == 2 {
				want = 2
			}
			if got[i] != want {
				return fmt.Errorf("id %d seen %d times, want %d", i, got[i], want)
			}
		}
		return nil
	})
}
