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
