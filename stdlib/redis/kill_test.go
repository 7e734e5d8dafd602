package redis

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/internal/proctest"
)

// pipeRun starts `pipe run` of file with env added, its output logged.
func pipeRun(t *testing.T, bin, root, state, file, prefix string, env ...string) *osexec.Cmd {
	t.Helper()
	cmd := osexec.Command(bin, "run", "-q", "--state-dir", state, file)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = root
	cmd.Stderr = &proctest.LogWriter{T: t, Prefix: prefix}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// killRuns runs the pipeline kills times, each time SIGKILLing it after
// a random 1-2.5 s; env gives each run its environment.
func killRuns(t *testing.T, kills int, start func(i int) *osexec.Cmd, progress func() string) {
	for i := range kills {
		cmd := start(i)
		time.Sleep(time.Duration(1000+rand.IntN(1500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("kill %d: %s", i+1, progress())
	}
}

// waitFor polls done until it reports true and then stays unchanged for
// 2 s, or fails after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, count func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		n := count()
		if n != last {
			last, since = n, time.Now()
		} else if n >= want && time.Since(since) > 2*time.Second {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %d after %v, want %d", what, last, timeout, want)
}

// produce adds entries id=from..to-1 to stream over span, retrying an
// entry while the server is away (a retried XADD whose first attempt
// arrived adds the entry twice: the entry's id field says which it is).
func produce(ctx context.Context, cl *goredis.Client, stream string, from, to int, span time.Duration) error {
	pause := span / time.Duration(max(to-from, 1))
	for i := from; i < to; i++ {
		for {
			err := cl.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []any{
				"id", strconv.Itoa(i), "user", "u" + strconv.Itoa(i%50), "amount", strconv.FormatFloat(float64(i%1000)/10, 'f', 1, 64)}}).Err()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(pause)
	}
	return nil
}

// fileIDs reads the id of every line of a JSON lines file.
func fileIDs(t *testing.T, path string) []int {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v struct{ ID int }
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		ids = append(ids, v.ID)
	}
	return ids
}

// tally checks that ids holds every id of 0..n-1 exactly once.
func tally(t *testing.T, what string, n int, ids []int) {
	t.Helper()
	seen := make([]int, n)
	extra := 0
	for _, id := range ids {
		if id < 0 || id >= n {
			extra++
			continue
		}
		seen[id]++
	}
	missing, doubled := 0, 0
	var firstMissing, firstDoubled []int
	for i, c := range seen {
		switch {
		case c == 0:
			missing++
			if len(firstMissing) < 5 {
				firstMissing = append(firstMissing, i)
			}
		case c > 1:
			doubled++
			if len(firstDoubled) < 5 {
				firstDoubled = append(firstDoubled, i)
			}
		}
	}
	if missing+doubled+extra > 0 {
		t.Fatalf("%s: %d records, %d missing (%v…), %d doubled (%v…), %d unexpected", what, len(ids), missing, firstMissing, doubled, firstDoubled, extra)
	}
	t.Logf("%s: all %d records exactly once", what, n)
}

// streamIDs reads the id field of every entry of stream.
func streamIDs(t *testing.T, cl *goredis.Client, stream string) []int {
	t.Helper()
	var ids []int
	start := "-"
	for {
		xs, err := cl.XRangeN(t.Context(), stream, start, "+", 5000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range xs {
			n, err := strconv.Atoi(fmt.Sprint(x.Values["id"]))
			if err != nil {
				t.Fatalf("entry %s: %v", x.ID, x.Values)
			}
			ids = append(ids, n)
		}
		if len(xs) < 5000 {
			return ids
		}
		start = "(" + xs[len(xs)-1].ID
	}
}

// TestKillRedisSource runs examples/redis_to_file.pipe under `pipe run`
// while entries are added to the stream, SIGKILLs it at random moments
// and restarts it, each run under another consumer name (c0, c1, c2) that
// claims its predecessor's pending entries (claim_idle = 1ms); then
// checks that the exactly-once file holds every entry added exactly once.
// Set PIPE_KILLTEST=1 to run it.
func TestKillRedisSource(t *testing.T) {
	n, kills := proctest.KillTest(t, 3000, 10)
	cl := newClient(t)
	root := proctest.ModuleRoot(t)
	bin := proctest.BuildPipe(t)
	dir := t.TempDir()
	stream, group := uniq("kill-src"), "pipe"
	t.Cleanup(func() { cl.Del(context.Background(), stream) })
	src, err := os.ReadFile(filepath.Join(root, "examples", "redis_to_file.pipe"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), "  schema = Event\n", "  schema = Event\n  consumer = \"${env:CONSUMER}\"\n  claim_idle = 1ms\n", 1)
	if text == string(src) {
		t.Fatal("the example changed: no schema line to add the consumer after")
	}
	file := filepath.Join(dir, "redis_to_file.pipe")
	os.WriteFile(file, []byte(text), 0o644)
	out := filepath.Join(dir, "out.jsonl")
	state := filepath.Join(dir, "state")
	produced := make(chan error, 1)
	go func() {
		produced <- produce(t.Context(), cl, stream, 0, n, time.Duration(kills)*1500*time.Millisecond)
	}()
	start := func(i int) *osexec.Cmd {
		return pipeRun(t, bin, root, state, file, "", "REDIS_ADDR="+testAddr(), "IN_STREAM="+stream, "GROUP="+group,
			"OUT="+out, "CONSUMER=c"+strconv.Itoa(i%3))
	}
	killRuns(t, kills, start, func() string {
		return fmt.Sprintf("%d lines, %d pending", len(fileIDs(t, out)), pendingCount(t, cl, stream, group))
	})
	cmd := start(kills)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "lines in the file", func() int { return len(fileIDs(t, out)) }, n)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	tally(t, "file", n, fileIDs(t, out))
	if p := pendingCount(t, cl, stream, group); p != 0 {
		t.Errorf("%d entries still pending after the last checkpoint", p)
	}
}

// sinkPipeline writes generated records 0..n-1 (150 a second) to three
// redis sinks: a stream exactly once (XADD and positions in one script),
// hashes at least once (HSET, idempotent: a replay writes the same
// fields) and keys exactly once (SET).
const sinkPipeline = `pipeline kill_redis_sink {
  checkpoint = 500ms
}

param prefix: string = "${env:PREFIX}"

source gen: generate {
  count  = %d
  rate   = %d
  fields = { id: seq(start = 0), user: format("u%%d", random_int(1, 50)), amount: random_float(1, 100) }
}

sink stream: redis {
  addr          = "${env:REDIS_ADDR}"
  command       = xadd
  key           = "${env:PREFIX}:stream"
  positions_key = "${env:PREFIX}:positions"
  delivery      = exactly_once
}

sink hashes: redis {
  addr     = "${env:REDIS_ADDR}"
  command  = hset
  key     := params.prefix + ":h:" + string(id)
  ttl      = 1h
  delivery = at_least_once
}

sink keys: redis {
  addr          = "${env:REDIS_ADDR}"
  key          := params.prefix + ":k:" + string(id)
  value        := user
  positions_key = "${env:PREFIX}:positions"
  delivery      = exactly_once
}

gen -> [stream, hashes, keys]
`

// checkSinkTargets checks what the server holds after the sink pipeline
// wrote records 0..n-1: the stream each once, every hash and key.
func checkSinkTargets(t *testing.T, cl *goredis.Client, prefix string, n int) {
	t.Helper()
	tally(t, "stream (exactly_once)", n, streamIDs(t, cl, prefix+":stream"))
	ctx := t.Context()
	hs := make([]*goredis.StringCmd, n)
	ks := make([]*goredis.StringCmd, n)
	if _, err := cl.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range n {
			hs[i] = p.HGet(ctx, prefix+":h:"+strconv.Itoa(i), "id")
			ks[i] = p.Get(ctx, prefix+":k:"+strconv.Itoa(i))
		}
		return nil
	}); err != nil && err != goredis.Nil {
		t.Fatal(err)
	}
	var badH, badK []int
	for i := range n {
		if hs[i].Val() != strconv.Itoa(i) {
			badH = append(badH, i)
		}
		if !strings.HasPrefix(ks[i].Val(), "u") {
			badK = append(badK, i)
		}
	}
	if len(badH)+len(badK) > 0 {
		t.Fatalf("%d hashes missing or wrong (%v), %d keys (%v)", len(badH), badH[:min(5, len(badH))], len(badK), badK[:min(5, len(badK))])
	}
	t.Logf("hashes and keys: all %d written", n)
}

// TestKillRedisSink runs generated records into a stream (exactly once),
// hashes (at least once, idempotent) and keys (exactly once) under `pipe
// run`, SIGKILLs it at random moments and restarts it, then checks what
// Redis holds: the stream has every record exactly once, every hash and
// key is there. Set PIPE_KILLTEST=1 to run it.
func TestKillRedisSink(t *testing.T) {
	n, kills := proctest.KillTest(t, 3000, 10)
	cl := newClient(t)
	root := proctest.ModuleRoot(t)
	bin := proctest.BuildPipe(t)
	dir := t.TempDir()
	prefix := uniq("kill-sink")
	t.Cleanup(func() { delPrefix(cl, prefix) })
	rate := max(n/(kills*2), 50)
	file := filepath.Join(dir, "sink.pipe")
	os.WriteFile(file, fmt.Appendf(nil, sinkPipeline, n, rate), 0o644)
	state := filepath.Join(dir, "state")
	start := func(int) *osexec.Cmd {
		return pipeRun(t, bin, root, state, file, "", "REDIS_ADDR="+testAddr(), "PREFIX="+prefix)
	}
	killRuns(t, kills, start, func() string {
		return fmt.Sprintf("%d entries", cl.XLen(t.Context(), prefix+":stream").Val())
	})
	cmd := start(kills)
	waitFor(t, time.Minute, "entries in the stream", func() int { return int(cl.XLen(t.Context(), prefix+":stream").Val()) }, n)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	checkSinkTargets(t, cl, prefix, n)
}

func delPrefix(cl *goredis.Client, prefix string) {
	ctx := context.Background()
	iter := cl.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			cl.Del(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		cl.Del(ctx, keys...)
	}
}
