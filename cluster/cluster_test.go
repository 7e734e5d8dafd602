package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"pipe.dev/pipe/internal/proctest"
)

// worker is one `pipe worker` child process.
type worker struct {
	id  string
	url string
	cmd *osexec.Cmd
	log *bytes.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startWorker(t *testing.T, bin, brokers, name, stateDir string, env []string) *worker {
	t.Helper()
	port := freePort(t)
	w := &worker{id: name, url: "http://127.0.0.1:" + strconv.Itoa(port), log: &bytes.Buffer{}}
	w.cmd = osexec.Command(bin, "worker", "--brokers", brokers, "--cluster", "clustertest",
		"--http", "127.0.0.1:"+strconv.Itoa(port), "--id", name, "--state-dir", stateDir,
		"--session-timeout", "2s", "--rebalance-timeout", "10s")
	w.cmd.Env = append(os.Environ(), env...)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("worker %s log:\n%s", w.id, w.log.String())
		}
	})
	return w
}

// running returns pipeline → worker for every pipeline whose instance
// runs its current version on the worker assigned it.
func running(ctx context.Context, c *Client) (map[string]string, error) {
	sts, err := runningStatuses(ctx, c)
	out := map[string]string{}
	for n, in := range sts {
		out[n] = in.Worker
	}
	return out, err
}

func produceIDs(t *testing.T, cl *kgo.Client, topic string, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, `{"id":%d}`, i)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// eachCommitted calls f with each committed record of a topic, reading it
// to its end.
func eachCommitted(t *testing.T, brokers, topic string, f func(*kgo.Record)) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			f(r)
			n++
		})
		if n == 0 {
			return
		}
	}
}

// readIDs reads a topic's committed records to its end and counts ids.
func readIDs(t *testing.T, brokers, topic string) map[int]int {
	t.Helper()
	out := map[int]int{}
	eachCommitted(t, brokers, topic, func(r *kgo.Record) {
		var v struct{ ID int }
		if json.Unmarshal(r.Value, &v) == nil {
			out[v.ID]++
		}
	})
	return out
}

func fileIDs(t *testing.T, path string) map[int]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var v struct{ ID int }
		if json.Unmarshal([]byte(line), &v) == nil && line != "" {
			out[v.ID]++
		}
	}
	return out
}

func exactlyOnce(got map[int]int, from, to int) error {
	for i := from; i < to; i++ {
		if got[i] != 1 {
			return fmt.Errorf("id %d seen %d times (%d ids seen)", i, got[i], len(got))
		}
	}
	if len(got) != to-from {
		return fmt.Errorf("%d ids seen, want %d", len(got), to-from)
	}
	return nil
}

func appendLines(t *testing.T, path string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := from; i < to; i++ {
		fmt.Fprintf(f, "{\"id\":%d}\n", i)
	}
}

// TestCluster runs three workers and four pipelines; a broken pipeline is
// refused and changes nothing; a killed worker's pipelines run elsewhere
// after the session timeout, exactly once; a stopped worker hands its
// pipelines over at once.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	bin := proctest.BuildPipe(t)
	brokers := proctest.StartBroker(t, bin, 1, "--topic", "clusterin:2", "--topic", "clusterout:2", "--topic", "clustergen")
	dir := t.TempDir()
	in, out, state := filepath.Join(dir, "in"), filepath.Join(dir, "out"), filepath.Join(dir, "state")
	for _, d := range []string{in, out} {
		os.MkdirAll(d, 0o755)
	}
	env := []string{"KAFKA_BROKERS=" + brokers, "CLUSTER_IN=" + in, "CLUSTER_OUT=" + out}
	// One state root for all: the shared storage a moved instance resumes
	// from (each pipeline keeps its store in its own directory under it).
	workers := map[string]*worker{}
	for _, id := range []string{"w1", "w2", "w3"} {
		workers[id] = startWorker(t, bin, brokers, id, state, env)
	}
	ctx := context.Background()
	c := &Client{URL: workers["w1"].url, HTTP: &http.Client{Timeout: 30 * time.Second}}
	waitFor(t, 30*time.Second, "three workers in one generation", func() error {
		ws, err := c.Workers(ctx)
		if err != nil {
			return err
		}
		if len(ws.Members) != 3 {
			return fmt.Errorf("%d members", len(ws.Members))
		}
		return nil
	})

	// Deploy through the CLI, each to another worker.
	names := []string{"clustergen", "clusterk2k", "clusterfiles", "clustergen2"}
	urls := []string{workers["w1"].url, workers["w2"].url, workers["w3"].url, workers["w1"].url}
	for i, n := range names {
		cmd := osexec.Command(bin, "deploy", filepath.Join("testdata", n+".pipe"), "--cluster", urls[i])
		cmd.Env = append(os.Environ(), env...)
		outp, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pipe deploy %s: %v\n%s", n, err, outp)
		}
		if !strings.Contains(string(outp), n+"/0") || !strings.Contains(string(outp), "running") {
			t.Errorf("pipe deploy %s printed %q, want its instance running", n, outp)
		}
	}
	var before map[string]string
	waitFor(t, 30*time.Second, "four pipelines running", func() error {
		var err error
		before, err = running(ctx, c)
		if err == nil && len(before) != 4 {
			err = fmt.Errorf("running: %v", before)
		}
		return err
	})
	perWorker := map[string]int{}
	for _, w := range before {
		perWorker[w]++
	}
	for id := range workers {
		if perWorker[id] < 1 || perWorker[id] > 2 {
			t.Errorf("worker %s runs %d pipelines, want 1 or 2 (balanced): %v", id, perWorker[id], before)
		}
	}

	// A broken pipeline: pipe deploy prints the diagnostics and the
	// cluster answers a direct PUT with exactly `pipe check --format
	// json`'s; nothing is stored.
	defsBefore, _ := c.Pipelines(ctx)
	broken := filepath.Join("testdata", "clusterbroken.pipe")
	outp, err := osexec.Command(bin, "deploy", broken, "--cluster", workers["w2"].url).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(outp), "PIPE302") {
		t.Errorf("pipe deploy of a broken pipeline: exit %d, output %s; want 1 and PIPE302", code, outp)
	}
	want, _ := osexec.Command(bin, "check", "--format", "json", broken).Output()
	src, _ := os.ReadFile(broken)
	_, err = (&Client{URL: workers["w3"].url}).Deploy(ctx, "clustergen", broken, src)
	var rej *Rejected
	if !errors.As(err, &rej) {
		t.Fatalf("PUT of a broken pipeline: %v, want it rejected", err)
	}
	if !bytes.Equal(rej.JSON, want) {
		t.Errorf("PUT diagnostics:\n%s\nwant pipe check's:\n%s", rej.JSON, want)
	}
	defsAfter, _ := c.Pipelines(ctx)
	if fmt.Sprint(versions(defsBefore)) != fmt.Sprint(versions(defsAfter)) {
		t.Errorf("the cluster changed after a rejected deploy: %v, then %v", versions(defsBefore), versions(defsAfter))
	}

	// Input for the exactly-once pipelines.
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	produceIDs(t, pcl, "clusterin", 0, 300)
	appendLines(t, filepath.Join(in, "a.jsonl"), 0, 300)
	waitFor(t, 30*time.Second, "first records through", func() error {
		if n := len(fileIDs(t, filepath.Join(out, "files.jsonl"))); n < 300 {
			return fmt.Errorf("files: %d", n)
		}
		if n := len(readIDs(t, brokers, "clusterout")); n < 300 {
			return fmt.Errorf("clusterout: %d", n)
		}
		return nil
	})

	// SIGKILL the worker running the Kafka → Kafka pipeline.
	victim := workers[before["clusterk2k"]]
	killed := time.Now()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	victim.cmd.Wait()
	delete(workers, victim.id)
	c = &Client{URL: anyWorker(workers).url, HTTP: c.HTTP}
	var after map[string]string
	waitFor(t, 60*time.Second, "every pipeline running on the survivors", func() error {
		var err error
		after, err = running(ctx, c)
		if err != nil {
			return err
		}
		for _, n := range names {
			if w := after[n]; w == "" || w == victim.id {
				return fmt.Errorf("%s on %q", n, w)
			}
		}
		return nil
	})
	t.Logf("failover after SIGKILL (session timeout 2s): %s until every pipeline of %s ran elsewhere", time.Since(killed).Round(10*time.Millisecond), victim.id)
	for n, w := range before {
		if w != victim.id && after[n] != w {
			t.Errorf("%s moved from %s to %s, though its worker lived", n, w, after[n])
		}
	}
	produceIDs(t, pcl, "clusterin", 300, 600)
	appendLines(t, filepath.Join(in, "a.jsonl"), 300, 600)
	waitFor(t, 60*time.Second, "every record exactly once after the failover", func() error {
		if err := exactlyOnce(fileIDs(t, filepath.Join(out, "files.jsonl")), 0, 600); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		if err := exactlyOnce(readIDs(t, brokers, "clusterout"), 0, 600); err != nil {
			return fmt.Errorf("clusterout: %w", err)
		}
		return nil
	})

	// SIGTERM: the worker leaves at once and its pipelines move.
	var leaving *worker
	for _, w := range workers {
		if perWorker := count(after, w.id); perWorker > 0 {
			leaving = w
			break
		}
	}
	stopped := time.Now()
	leaving.cmd.Process.Signal(syscall.SIGTERM)
	if err := leaving.cmd.Wait(); err != nil {
		t.Errorf("worker %s after SIGTERM: %v", leaving.id, err)
	}
	delete(workers, leaving.id)
	c = &Client{URL: anyWorker(workers).url, HTTP: c.HTTP}
	waitFor(t, 60*time.Second, "every pipeline on the last worker", func() error {
		got, err := running(ctx, c)
		if err != nil {
			return err
		}
		for _, n := range names {
			if w := got[n]; w == "" || workers[w] == nil {
				return fmt.Errorf("%s on %q", n, w)
			}
		}
		return nil
	})
	t.Logf("handover after SIGTERM: %s until every pipeline of %s ran on the last worker", time.Since(stopped).Round(10*time.Millisecond), leaving.id)

	// Undeploy: the definition goes, the instance stops.
	if err := c.Undeploy(ctx, "clustergen2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx, "clustergen2"); !errors.As(err, new(*NotFound)) {
		t.Errorf("status of an undeployed pipeline: %v, want not found", err)
	}
	size := func() int64 {
		st, _ := os.Stat(filepath.Join(out, "gen2.jsonl"))
		if st == nil {
			return 0
		}
		return st.Size()
	}
	waitFor(t, 10*time.Second, "undeployed pipeline stops writing", func() error {
		s := size()
		time.Sleep(time.Second)
		if size() != s {
			return errors.New("gen2.jsonl still grows")
		}
		return nil
	})
}

func count(m map[string]string, worker string) int {
	n := 0
	for _, w := range m {
		if w == worker {
			n++
		}
	}
	return n
}

func anyWorker(ws map[string]*worker) *worker {
	for _, w := range ws {
		return w
	}
	return nil
}

func versions(ps []PipelineStatus) map[string]int64 {
	out := map[string]int64{}
	for _, p := range ps {
		out[p.Name] = p.Version
	}
	return out
}

func exitCode(err error) int {
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
