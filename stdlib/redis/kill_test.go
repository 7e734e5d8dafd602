package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/internal/proctest"
)

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

// streamIDs reads the id field of every entry of stream.
func streamIDs(t *testing.T, cl *goredis.Client, stream string) []int64 {
	t.Helper()
	var ids []int64
	start := "-"
	for {
		xs, err := cl.XRangeN(t.Context(), stream, start, "+", 5000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range xs {
			n, err := strconv.ParseInt(fmt.Sprint(x.Values["id"]), 10, 64)
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
	k := proctest.NewKill(t, bin, "redis-source", text)
	out := filepath.Join(k.Dir, "out.jsonl")
	k.Dir = root
	k.Kills = kills
	k.Env = []string{"REDIS_ADDR=" + testAddr(), "IN_STREAM=" + stream, "GROUP=" + group, "OUT=" + out}
	k.RunEnv = func(i int) []string { return []string{"CONSUMER=c" + strconv.Itoa(i%3)} }
	k.Life = func() time.Duration { return time.Duration(1000+rand.IntN(1500)) * time.Millisecond }
	k.Produce = func() error {
		return produce(t.Context(), cl, stream, 0, n, time.Duration(kills)*1500*time.Millisecond)
	}
	k.Progress = func() string {
		return fmt.Sprintf("%d lines, %d pending", len(proctest.FileIDs(t, out)), pendingCount(t, cl, stream, group))
	}
	k.Complete = func(t *testing.T) {
		proctest.WaitSettled(t, "lines in the file", func() int { return len(proctest.FileIDs(t, out)) }, n, time.Minute)
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		return proctest.TallyIDs(proctest.Want(0, int64(n)), proctest.FileIDs(t, out))
	}
	k.Run(t)
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

// checkHashesAndKeys checks that the sink pipeline wrote the hash and
// the key of every record 0..n-1.
func checkHashesAndKeys(t *testing.T, cl *goredis.Client, prefix string, n int) {
	t.Helper()
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
	prefix := uniq("kill-sink")
	t.Cleanup(func() { delPrefix(cl, prefix) })
	rate := max(n/(kills*2), 50)
	k := proctest.NewKill(t, bin, "redis-sink", fmt.Sprintf(sinkPipeline, n, rate))
	k.Dir = root
	xlen := func() int { return int(cl.XLen(t.Context(), prefix+":stream").Val()) }
	k.Kills = kills
	k.Ends = true
	k.Env = []string{"REDIS_ADDR=" + testAddr(), "PREFIX=" + prefix}
	k.Life = func() time.Duration { return time.Duration(1000+rand.IntN(1500)) * time.Millisecond }
	k.Progress = func() string { return fmt.Sprintf("%d entries", xlen()) }
	k.Complete = func(t *testing.T) { proctest.WaitSettled(t, "entries in the stream", xlen, n, time.Minute) }
	k.Check = func(t *testing.T) proctest.Tallied {
		checkHashesAndKeys(t, cl, prefix, n)
		return proctest.TallyIDs(proctest.Want(0, int64(n)), streamIDs(t, cl, prefix+":stream"))
	}
	k.Run(t)
}

func delPrefix(cl *goredis.Client, prefix string) {
	ctx := context.Background()
	var keys []string
	for key := range cl.Scan(ctx, 0, prefix+"*", 1000).Iterator().Vals(ctx) {
		keys = append(keys, key)
		if len(keys) == 1000 {
			cl.Del(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		cl.Del(ctx, keys...)
	}
}
