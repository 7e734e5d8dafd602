package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"pipe.dev/pipe/stdlib/kafka/devbroker"

	_ "pipe.dev/pipe/stdlib/all"
)

type testWorker struct {
	w    *Worker
	srv  *httptest.Server
	stop context.CancelFunc
	done chan error
}

func startTestWorker(t *testing.T, brokers, id, stateDir string) *testWorker {
	t.Helper()
	w, err := New(context.Background(), Config{
		Brokers: []string{brokers}, Cluster: "clusterjoin", ID: id, StateDir: stateDir,
		SessionTimeout: 2 * time.Second, RebalanceTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	tw := &testWorker{w: w, srv: httptest.NewServer(w.Handler()), done: make(chan error, 1)}
	w.cfg.URL = tw.srv.URL
	ctx, cancel := context.WithCancel(context.Background())
	tw.stop = cancel
	go func() { tw.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		tw.close()
	})
	return tw
}

func (tw *testWorker) close() {
	if tw.stop == nil {
		return
	}
	tw.stop()
	<-tw.done
	tw.srv.Close()
	tw.stop = nil
}

func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not after %s: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runningStatuses returns the status of every running instance whose
// worker the current generation assigns it to, by pipeline.
func runningStatuses(ctx context.Context, c *Client) (map[string]Instance, error) {
	ins, err := runningInstances(ctx, c)
	out := map[string]Instance{}
	for _, in := range ins {
		out[in.Pipeline] = in
	}
	return out, err
}

// runningInstances returns the status of every running instance whose
// worker the current generation assigns it to, by instance id.
func runningInstances(ctx context.Context, c *Client) (map[string]Instance, error) {
	all, err := c.Pipelines(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]Instance{}
	for _, p := range all {
		for _, in := range p.Instances {
			if in.State == StateRunning && in.Version == p.Version && in.Worker == in.Assigned {
				out[in.Instance] = in
			}
		}
	}
	return out, nil
}

func genPipeline(name, out string) []byte {
	return fmt.Appendf(nil, `pipeline %s {
  checkpoint = 200ms
}

source ticks: generate {
  rate = 20
  fields {
    id = seq(start = 1)
  }
}

sink out: file {
  path = %q
}

ticks -> out
`, name, out)
}

// A worker that joins takes its share in two generations, and the
// instances that stay put are never restarted: their status, written
// once when an instance starts, is the one from before the join. A new
// version restarts a pipeline where it runs; a removed one stops.
func TestJoinMovesOnlyWhatMustMove(t *testing.T) {
	b, err := devbroker.Start(context.Background(), devbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close) // after the workers' cleanups: they write as they stop
	dir := t.TempDir()
	w1 := startTestWorker(t, b.Addr(), "w1", filepath.Join(dir, "state"))
	w2 := startTestWorker(t, b.Addr(), "w2", filepath.Join(dir, "state"))
	ctx := context.Background()
	c := &Client{URL: w1.srv.URL, HTTP: &http.Client{Timeout: 30 * time.Second}}
	names := []string{"clusterj1", "clusterj2", "clusterj3", "clusterj4"}
	for _, n := range names {
		if _, err := c.Deploy(ctx, n, n+".pipe", genPipeline(n, filepath.Join(dir, n+".jsonl"))); err != nil {
			t.Fatal(err)
		}
	}
	var before map[string]Instance
	waitFor(t, 30*time.Second, "four pipelines on two workers", func() error {
		var err error
		before, err = runningStatuses(ctx, c)
		if err == nil && len(before) != 4 {
			err = fmt.Errorf("running %d", len(before))
		}
		return err
	})
	per := map[string]int{}
	for _, in := range before {
		per[in.Worker]++
	}
	if per["w1"] != 2 || per["w2"] != 2 {
		t.Fatalf("before the join: %v, want 2 and 2", per)
	}

	// The records each run wrote (its metrics, which a restart sets back
	// to 0): at 20 records/s, 150 is more than a restarted run could
	// write again while w3 joins.
	counts := map[string]int64{}
	waitFor(t, 30*time.Second, "150 records out of each pipeline", func() error {
		for _, n := range names {
			st, err := c.Status(ctx, n)
			if err != nil {
				return err
			}
			if counts[n] = st.RecordsOut; st.RecordsOut < 150 {
				return fmt.Errorf("%s wrote %d", n, st.RecordsOut)
			}
		}
		return nil
	})

	startTestWorker(t, b.Addr(), "w3", filepath.Join(dir, "state"))
	var after map[string]Instance
	waitFor(t, 30*time.Second, "w3 runs one pipeline", func() error {
		var err error
		after, err = runningStatuses(ctx, c)
		if err != nil {
			return err
		}
		n := 0
		for _, in := range after {
			if in.Worker == "w3" {
				n++
			}
		}
		if len(after) != 4 || n != 1 {
			return fmt.Errorf("running %d, %d on w3", len(after), n)
		}
		return nil
	})
	moved := 0
	for n, in := range after {
		if in.Worker != before[n].Worker {
			moved++
			continue
		}
		if in.Generation != before[n].Generation || !in.Time.Equal(before[n].Time) {
			t.Errorf("%s stayed on %s but was restarted: generation %d at %s, before %d at %s",
				n, in.Worker, in.Generation, in.Time, before[n].Generation, before[n].Time)
		}
		if st, err := c.Status(ctx, in.Pipeline); err != nil || st.RecordsOut < counts[in.Pipeline] {
			t.Errorf("%s stayed on %s but its records out went from %d to %+v (%v): its run restarted", n, in.Worker, counts[in.Pipeline], st, err)
		}
	}
	if moved != 1 {
		t.Errorf("%d pipelines moved on a join, want 1", moved)
	}

	// A new version restarts the pipeline on its worker.
	d, err := c.Deploy(ctx, "clusterj1", "clusterj1.pipe", genPipeline("clusterj1", filepath.Join(dir, "clusterj1b.jsonl")))
	if err != nil || d.Created {
		t.Fatalf("redeploy: %+v, %v", d, err)
	}
	waitFor(t, 30*time.Second, "the new version running", func() error {
		st, err := c.Status(ctx, "clusterj1")
		if err != nil {
			return err
		}
		if in := st.Instances[0]; in.Version != d.Version || in.State != StateRunning || in.Worker != after["clusterj1"].Worker {
			return fmt.Errorf("%+v", in.Status)
		}
		return nil
	})

	// A name that does not match the pipeline block is refused.
	if _, err := c.Deploy(ctx, "clusterother", "x.pipe", genPipeline("clusterj2", filepath.Join(dir, "x.jsonl"))); err == nil {
		t.Error("a pipeline deployed under another name than its own was taken")
	}

	// So is one that imports a file: a definition is self-contained.
	imp := append([]byte("import \"lib.pipe\" as lib\n"), genPipeline("clusterimp", filepath.Join(dir, "imp.jsonl"))...)
	var rej *Rejected
	if _, err := c.Deploy(ctx, "clusterimp", "imp.pipe", imp); !errors.As(err, &rej) || !strings.Contains(string(rej.JSON), `"PIPE004"`) {
		t.Errorf("a pipeline importing a file: %v, want it rejected with PIPE004", err)
	}

	if err := c.Undeploy(ctx, "clusterj2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Undeploy(ctx, "clusterj2"); !errors.As(err, new(*NotFound)) {
		t.Errorf("second undeploy: %v, want not found", err)
	}
	waitFor(t, 30*time.Second, "clusterj2 stopped", func() error {
		for _, tw := range []*testWorker{w1, w2} {
			if tw.w.handleOf(InstanceID("clusterj2", 0)) != nil {
				return errors.New("still running")
			}
		}
		return nil
	})
	w2.close()
	waitFor(t, 30*time.Second, "three pipelines on two workers after w2 stopped", func() error {
		got, err := runningStatuses(ctx, c)
		if err != nil {
			return err
		}
		for n, in := range got {
			if in.Worker == "w2" {
				return fmt.Errorf("%s on w2", n)
			}
		}
		if len(got) != 3 {
			return fmt.Errorf("running %d", len(got))
		}
		return nil
	})
}

// instancesPipeline reads topic in through a group and writes topic out,
// in n instances.
func instancesPipeline(brokers string, n int) []byte {
	return groupedPipeline("clusterinst", "instin", "instout", "at_least_once", brokers, n)
}

// groupedPipeline is pipeline name of n instances: it reads topic in
// through the group name and writes topic out with delivery.
func groupedPipeline(name, in, out, delivery, brokers string, n int) []byte {
	return fmt.Appendf(nil, `pipeline %s {
  delivery   = %s
  checkpoint = 200ms
  instances  = %d
}

schema Event {
  id: int
}

source in: kafka {
  brokers            = [%q]
  topic              = %q
  group              = %q
  format             = json
  schema             = Event
  session_timeout    = 1s
  heartbeat_interval = 300ms
}

sink out: kafka {
  brokers  = [%q]
  topic    = %q
  delivery = %s
}

in -> out
`, name, delivery, n, brokers, in, name, brokers, out, delivery)
}

// A pipeline of instances = 2 runs two instances on two workers, each
// with a state directory of its own, and they share the input; one that
// asks for 1 again runs one. A generate source cannot be shared: such a
// pipeline is refused with PIPE207.
func TestInstances(t *testing.T) {
	b, err := devbroker.Start(context.Background(), devbroker.Options{
		Topics: []devbroker.Topic{{Name: "instin", Partitions: 4}, {Name: "instout", Partitions: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	w1 := startTestWorker(t, b.Addr(), "w1", state)
	w2 := startTestWorker(t, b.Addr(), "w2", state)
	ctx := context.Background()
	c := &Client{URL: w1.srv.URL, HTTP: &http.Client{Timeout: 30 * time.Second}}
	if _, err := c.Deploy(ctx, "clusterinst", "clusterinst.pipe", instancesPipeline(b.Addr(), 2)); err != nil {
		t.Fatal(err)
	}
	waitTwoInstances(t, c, "clusterinst")
	produceSpread(t, b.Addr(), "instin", 200)
	waitFor(t, 30*time.Second, "every record through", func() error {
		got := readIDs(t, b.Addr(), "instout")
		for i := range 200 {
			if got[i] == 0 {
				return fmt.Errorf("id %d missing (%d seen)", i, len(got))
			}
		}
		return nil
	})
	// Each instance keeps checkpoints of its own in the offsets topic.
	waitFor(t, 30*time.Second, "a checkpoint of each instance", func() error {
		recs, err := readOffsets(ctx, []kgo.Opt{kgo.SeedBrokers(b.Addr())}, offsetsTopic("clusterjoin"))
		if err != nil {
			return err
		}
		for i := range 2 {
			if id := InstanceID("clusterinst", i); recs[id] == nil {
				return fmt.Errorf("no checkpoint of %s", id)
			}
		}
		return nil
	})
	// Each instance read part of the input: both wrote a status of
	// their own and ran on their own worker.
	st, err := c.Status(ctx, "clusterinst")
	if err != nil || len(st.Instances) != 2 {
		t.Fatalf("status: %+v, %v", st, err)
	}

	// Back to one instance: clusterinst/1 stops.
	d, err := c.Deploy(ctx, "clusterinst", "clusterinst.pipe", instancesPipeline(b.Addr(), 1))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "one instance", func() error {
		got, err := runningInstances(ctx, c)
		if err != nil {
			return err
		}
		if in, ok := got[InstanceID("clusterinst", 0)]; len(got) != 1 || !ok || in.Version != d.Version {
			return fmt.Errorf("running %v", workersOf(got))
		}
		for _, tw := range []*testWorker{w1, w2} {
			if tw.w.handleOf(InstanceID("clusterinst", 1)) != nil {
				return fmt.Errorf("clusterinst/1 still runs on %s", tw.w.cfg.ID)
			}
		}
		return nil
	})

	gen := bytes.Replace(genPipeline("clustergeninst", filepath.Join(dir, "g.jsonl")), []byte("checkpoint = 200ms"), []byte("checkpoint = 200ms\n  instances  = 2"), 1)
	var rej *Rejected
	if _, err := c.Deploy(ctx, "clustergeninst", "g.pipe", gen); !errors.As(err, &rej) || !strings.Contains(string(rej.JSON), `"PIPE207"`) {
		t.Errorf("two instances of a generate source: %v, want it rejected with PIPE207", err)
	}
}

// waitTwoInstances waits until both instances of pipeline name run, on
// two workers.
func waitTwoInstances(t *testing.T, c *Client, name string) {
	t.Helper()
	waitFor(t, 30*time.Second, "two instances on two workers", func() error {
		got, err := runningInstances(context.Background(), c)
		if err != nil {
			return err
		}
		a, b := got[InstanceID(name, 0)], got[InstanceID(name, 1)]
		if len(got) != 2 || a.Worker == b.Worker {
			return fmt.Errorf("running %v", workersOf(got))
		}
		return nil
	})
}

// produceSpread writes {"id":0} … {"id":n-1} to topic, spread over its 4
// partitions by hand (kgo's default partitioner ignores Record.Partition).
func produceSpread(t *testing.T, brokers, topic string, n int) {
	t.Helper()
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 4), Value: fmt.Appendf(nil, `{"id":%d}`, i)})
	}
	if err := pcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
