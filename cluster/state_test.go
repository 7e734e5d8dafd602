package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
)

// TestClusterStateInKafka runs two workers with state directories of their
// own: a file → file pipeline, exactly once, moved by a SIGKILL of its
// worker, resumes on the other from the checkpoint in the offsets topic:
// it reads only what came after it (not the input from its start again)
// and the output holds every record once.
func TestClusterStateInKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	bin := proctest.BuildPipe(t)
	brokers := proctest.StartBroker(t, bin, 1)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, d := range []string{in, out} {
		os.MkdirAll(d, 0o755)
	}
	env := []string{"KAFKA_BROKERS=" + brokers, "CLUSTER_IN=" + in, "CLUSTER_OUT=" + out}
	workers := map[string]*worker{}
	for _, id := range []string{"w1", "w2"} {
		workers[id] = startWorker(t, bin, brokers, id, filepath.Join(dir, "state-"+id), env)
	}
	ctx := context.Background()
	hc := &http.Client{Timeout: 30 * time.Second}
	c := &Client{URL: workers["w1"].url, HTTP: hc}
	waitFor(t, 30*time.Second, "two workers in one generation", func() error {
		ws, err := c.Workers(ctx)
		if err == nil && len(ws.Members) != 2 {
			err = fmt.Errorf("%d members", len(ws.Members))
		}
		return err
	})
	src, err := os.ReadFile(filepath.Join("testdata", "clusterfiles.pipe"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, "clusterfiles", "clusterfiles.pipe", src); err != nil {
		t.Fatal(err)
	}
	var owner string
	waitFor(t, 30*time.Second, "the pipeline running", func() error {
		got, err := running(ctx, c)
		owner = got["clusterfiles"]
		if err == nil && owner == "" {
			err = fmt.Errorf("running: %v", got)
		}
		return err
	})
	appendLines(t, filepath.Join(in, "a.jsonl"), 0, 300)
	outFile := filepath.Join(out, "files.jsonl")
	waitFor(t, 30*time.Second, "the first records through", func() error {
		return exactlyOnce(fileIDs(t, outFile), 0, 300)
	})
	// The source's position is checkpointed in the topic: the offsets
	// API reads it there.
	waitFor(t, 10*time.Second, "the checkpoint in the offsets topic", func() error {
		rep, err := c.Offsets(ctx, "clusterfiles")
		if err != nil {
			return err
		}
		for _, p := range rep.Positions {
			if p.Holder == "state store" && p.Source == "in" && p.Next > 0 {
				return nil
			}
		}
		return fmt.Errorf("positions: %+v", rep.Positions)
	})
	time.Sleep(time.Second) // idle checkpoints: the store covers the 300 lines

	victim := workers[owner]
	victim.cmd.Process.Signal(syscall.SIGKILL)
	victim.cmd.Wait()
	delete(workers, owner)
	survivor := anyWorker(workers)
	c = &Client{URL: survivor.url, HTTP: hc}
	waitFor(t, 60*time.Second, "the pipeline running on the survivor", func() error {
		got, err := running(ctx, c)
		if err == nil && got["clusterfiles"] != survivor.id {
			err = fmt.Errorf("running: %v", got)
		}
		return err
	})
	appendLines(t, filepath.Join(in, "a.jsonl"), 300, 600)
	waitFor(t, 30*time.Second, "every record exactly once after the move", func() error {
		return exactlyOnce(fileIDs(t, outFile), 0, 600)
	})
	st, err := c.Status(ctx, "clusterfiles")
	if err != nil {
		t.Fatal(err)
	}
	read := st.RecordsIn
	if read == 0 || read >= 600 {
		t.Errorf("the moved instance read %d records, want the 300 appended after the move (not the input from its start)", read)
	}
	t.Logf("moved instance read %d records of 600", read)
	// The CLI: pipe offsets --cluster prints the positions as pipe
	// offsets show does; pipe pause and pipe resume.
	pipe := func(args ...string) string {
		t.Helper()
		outp, err := osexec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("pipe %s: %v\n%s", strings.Join(args, " "), err, outp)
		}
		return string(outp)
	}
	if got := pipe("offsets", "--cluster", survivor.url, "clusterfiles"); !strings.Contains(got, "HELD BY") || !strings.Contains(got, "state store") {
		t.Errorf("pipe offsets --cluster printed:\n%s", got)
	}
	pipe("pause", "--cluster", survivor.url, "clusterfiles")
	waitFor(t, 30*time.Second, "the pipeline paused", func() error {
		got := pipe("status", "--cluster", survivor.url, "clusterfiles")
		if !strings.Contains(got, StatePaused) {
			return fmt.Errorf("pipe status: %s", got)
		}
		return nil
	})
	pipe("resume", "--cluster", survivor.url, "clusterfiles")
	waitFor(t, 30*time.Second, "the pipeline running again", func() error {
		got, err := running(ctx, c)
		if err == nil && got["clusterfiles"] == "" {
			err = fmt.Errorf("running: %v", got)
		}
		return err
	})
	// Its state directory on the survivor holds no checkpoint: the
	// topic does.
	if _, err := os.Stat(filepath.Join(dir, "state-"+survivor.id, "clusterfiles", "checkpoint.json")); err == nil {
		t.Errorf("a checkpoint file in the survivor's state directory: the instance used the local store")
	}
}
