package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"pipe.dev/pipe/internal/proctest"
)

// TestClusterKill kills workers at random (SIGKILL, or SIGSTOP past the
// session timeout and SIGCONT: a zombie that comes back) while input
// flows, restarting each: every pipeline runs at the end, and the two
// exactly-once pipelines hold every input record once. It measures the
// failover time: from the signal to the victim's pipelines running on
// other workers.
func TestClusterKill(t *testing.T) {
	_, kills := proctest.KillTest(t, 0, 12)
	bin := proctest.BuildPipe(t)
	brokers := proctest.StartBroker(t, bin, 1, "--topic", "clusterin:2", "--topic", "clusterout:2", "--topic", "clustergen")
	dir := t.TempDir()
	in, out, state := filepath.Join(dir, "in"), filepath.Join(dir, "out"), filepath.Join(dir, "state")
	for _, d := range []string{in, out} {
		os.MkdirAll(d, 0o755)
	}
	env := []string{"KAFKA_BROKERS=" + brokers, "CLUSTER_IN=" + in, "CLUSTER_OUT=" + out}
	workers := map[string]*worker{}
	for _, id := range []string{"w1", "w2", "w3"} {
		workers[id] = startWorker(t, bin, brokers, id, state, env)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	client := func(not string) *Client {
		for _, id := range []string{"w1", "w2", "w3"} {
			if id != not {
				return &Client{URL: workers[id].url, HTTP: hc}
			}
		}
		return nil
	}
	ctx := context.Background()
	members := func(c *Client) error {
		ws, err := c.Workers(ctx)
		if err == nil && len(ws.Members) != 3 {
			err = fmt.Errorf("%d members", len(ws.Members))
		}
		return err
	}
	waitFor(t, 30*time.Second, "three workers", func() error { return members(client("")) })
	names := []string{"clustergen", "clusterk2k", "clusterfiles"}
	for _, n := range names {
		src, err := os.ReadFile(filepath.Join("testdata", n+".pipe"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client("").Deploy(ctx, n, n+".pipe", src); err != nil {
			t.Fatal(err)
		}
	}
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))
	const chunk = 200
	sent := 0
	var failovers []time.Duration
	for k := range kills {
		var placed map[string]Instance
		waitFor(t, 60*time.Second, "every pipeline running", func() error {
			var err error
			placed, err = runningStatuses(ctx, client(""))
			if err == nil && len(placed) != len(names) {
				err = fmt.Errorf("running: %v", placed)
			}
			return err
		})
		victim := fmt.Sprintf("w%d", 1+rng.IntN(3))
		sig := syscall.SIGKILL
		if k%3 == 2 {
			sig = syscall.SIGSTOP
		}
		produceIDs(t, pcl, "clusterin", sent, sent+chunk)
		appendLines(t, filepath.Join(in, "a.jsonl"), sent, sent+chunk)
		sent += chunk
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		owned := 0
		for _, in := range placed {
			if in.Worker == victim {
				owned++
			}
		}
		start := time.Now()
		workers[victim].cmd.Process.Signal(sig)
		c := client(victim)
		if sig == syscall.SIGSTOP {
			// A paused worker keeps the locks of its state directories
			// (and the file sink's): its pipelines that hold one move
			// only once it wakes, learns it was dropped and stops them.
			time.Sleep(2 * 2 * time.Second) // twice the session timeout
			workers[victim].cmd.Process.Signal(syscall.SIGCONT)
		}
		if owned > 0 {
			// Started again in a later generation: on another worker, or,
			// for a paused one that is back, on any.
			waitFor(t, 60*time.Second, "the victim's pipelines running again", func() error {
				got, err := runningStatuses(ctx, c)
				if err != nil {
					return err
				}
				for n, in := range placed {
					if in.Worker != victim {
						continue
					}
					if g, ok := got[n]; !ok || g.Generation <= in.Generation || sig == syscall.SIGKILL && g.Worker == victim {
						return fmt.Errorf("%s: %+v", n, g.Status)
					}
				}
				return nil
			})
			if sig == syscall.SIGKILL {
				failovers = append(failovers, time.Since(start))
			}
		}
		t.Logf("kill %d: %s of %s (%d pipelines), moved after %s", k+1, sig, victim, owned, time.Since(start).Round(10*time.Millisecond))
		if sig != syscall.SIGSTOP {
			workers[victim].cmd.Wait()
			workers[victim] = startWorker(t, bin, brokers, victim, state, env)
		}
		waitFor(t, 60*time.Second, "three workers again", func() error { return members(c) })
	}
	waitFor(t, 90*time.Second, "every record exactly once", func() error {
		if err := exactlyOnce(fileIDs(t, filepath.Join(out, "files.jsonl")), 0, sent); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		if err := exactlyOnce(readIDs(t, brokers, "clusterout"), 0, sent); err != nil {
			return fmt.Errorf("clusterout: %w", err)
		}
		return nil
	})
	waitFor(t, 60*time.Second, "every pipeline running at the end", func() error {
		got, err := running(ctx, client(""))
		if err == nil && len(got) != len(names) {
			err = fmt.Errorf("running: %v", got)
		}
		return err
	})
	if len(failovers) > 0 {
		sort.Slice(failovers, func(i, j int) bool { return failovers[i] < failovers[j] })
		t.Logf("failover with a 2s session timeout over %d SIGKILLs that moved pipelines: median %s, max %s",
			len(failovers), failovers[len(failovers)/2].Round(10*time.Millisecond), slices.Max(failovers).Round(10*time.Millisecond))
	}
}
