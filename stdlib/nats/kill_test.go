package nats

import (
	"context"
	"fmt"
	"math/rand/v2"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
)

// publishSpread publishes messages {"id": i} for i in [0, n) on subject,
// in chunks spread over span, each acknowledged by JetStream; a chunk the
// server did not acknowledge (it is restarting) is published again with
// the same message ids, so each id is stored once.
func publishSpread(ctx context.Context, subject string, n int, span time.Duration) error {
	nc, err := nats.Connect(testURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	const chunk = 100
	start := time.Now()
	for from := 0; from < n; from += chunk {
		for attempt := 0; ; attempt++ {
			ok := true
			var futs []jetstream.PubAckFuture
			for i := from; i < min(from+chunk, n); i++ {
				f, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: fmt.Appendf(nil, `{"id":%d}`, i)}, jetstream.WithMsgID("in-"+strconv.Itoa(i)))
				if err != nil {
					ok = false
					break
				}
				futs = append(futs, f)
			}
			for _, f := range futs {
				select {
				case <-f.Ok():
				case <-f.Err():
					ok = false
				case <-time.After(10 * time.Second):
					ok = false
				}
			}
			if ok {
				break
			}
			if attempt > 300 || ctx.Err() != nil {
				return fmt.Errorf("publish chunk at %d: not acknowledged", from)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if d := time.Duration(float64(span) * float64(from+chunk) / float64(n)); time.Since(start) < d {
			time.Sleep(d - time.Since(start))
		}
	}
	return nil
}

// TestKillNATSSource runs a pipeline reading a JetStream stream through a
// durable consumer into an exactly-once file sink, SIGKILLs `pipe run` at
// random moments while messages are published, restarts it, and checks
// that the file holds every message published exactly once. Set
// PIPE_KILLTEST=1 to run it; PIPE_KILLTEST_RECORDS and PIPE_KILLTEST_KILLS
// scale it.
func TestKillNATSSource(t *testing.T) {
	n, kills := proctest.KillTest(t, 4000, 12)
	e := newNATS(t)
	bin := proctest.BuildPipe(t)
	sn := name("killsrc")
	e.stream(t, sn, sn)
	text := fmt.Sprintf(`pipeline nats_kill_source {
  checkpoint = 300ms
}

source in: nats {
  url      = "${env:NATS_URL}"
  stream   = %q
  consumer = "pipe"
  batch    = 50
}

transform shape: map {
  keep id
  subject := meta.subject
  seq     := meta.offset
}

sink out: file {
  path     = "out.jsonl"
  format   = json
  delivery = exactly_once
}

in -> shape -> out
`, sn)
	k := proctest.NewKill(t, bin, "source", text)
	out := filepath.Join(k.Dir, "out.jsonl")
	k.Env, k.Kills = []string{"NATS_URL=" + testURL()}, kills
	k.Life = func() time.Duration { return time.Duration(500+rand.IntN(1500)) * time.Millisecond }
	k.Produce = func() error {
		return publishSpread(t.Context(), sn+".events", n, time.Duration(kills)*1500*time.Millisecond)
	}
	k.Progress = func() string { return fmt.Sprintf("%d lines", len(proctest.FileIDs(t, out))) }
	k.Complete = func(t *testing.T) {
		proctest.WaitSettled(t, "file", func() int { return len(proctest.FileIDs(t, out)) }, n, time.Minute)
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		if info := consumerInfo(t, e, sn, "pipe"); info.AckFloor.Stream != uint64(n) {
			t.Errorf("consumer acknowledged up to %d, want %d", info.AckFloor.Stream, n)
		}
		return proctest.TallyIDs(proctest.Want(0, int64(n)), proctest.FileIDs(t, out))
	}
	k.Run(t)
}

// TestKillNATSSink runs a pipeline writing generated records to JetStream
// through the exactly-once nats sink, SIGKILLs `pipe run` at random
// moments, restarts it, and reads the stream: it must hold every record
// exactly once (the replays after each kill fall within the duplicate
// window and are dropped by their message ids). Set PIPE_KILLTEST=1 to run
// it.
func TestKillNATSSink(t *testing.T) {
	n, kills := proctest.KillTest(t, 4000, 12)
	e := newNATS(t)
	bin := proctest.BuildPipe(t)
	sn := name("killsink")
	t.Cleanup(func() { e.js.DeleteStream(context.Background(), sn) })
	t.Cleanup(func() { e.purgeKey("nats_kill_sink.out.0") })
	// About 12 s of records at the rate: the kills land in the middle.
	rate := float64(n) / (float64(kills) * 1.0)
	text := fmt.Sprintf(`pipeline nats_kill_sink {
  checkpoint = 300ms
}

source gen: generate {
  count  = %d
  rate   = %g
  batch  = 20
  fields = { id = seq(start = 0), region = pick(["eu", "us", "ap"]) }
}

sink out: nats {
  url           = "${env:NATS_URL}"
  stream        = %q
  create_stream = true
  subjects      = [%q]
  subject      := %q + "." + region
  headers      := { "region": region }
  delivery      = exactly_once
}

gen -> out
`, n, rate, sn, sn+".>", sn)
	k := proctest.NewKill(t, bin, "sink", text)
	k.Env, k.Kills, k.Ends = []string{"NATS_URL=" + testURL()}, kills, true
	k.Life = func() time.Duration { return time.Duration(400+rand.IntN(1200)) * time.Millisecond }
	k.Progress = func() string {
		st, err := e.js.Stream(t.Context(), sn)
		if err != nil {
			return "no stream yet"
		}
		return fmt.Sprintf("%d messages", st.CachedInfo().State.Msgs)
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		return proctest.TallyIDs(proctest.Want(0, int64(n)), e.ids(t, sn))
	}
	k.Run(t)
}

// TestServerRestartNATS runs a pipeline reading a JetStream stream into
// an exactly-once file sink and an exactly-once nats sink, restarts
// nats-server twice in the middle of the run (stopping the process and
// starting it again with its start command) while messages are published,
// and checks that both outputs hold every message exactly once. Set
// PIPE_KILLTEST=1 to run it.
func TestServerRestartNATS(t *testing.T) {
	n, _ := proctest.KillTest(t, 4000, 0)
	e := newNATS(t)
	if _, err := osexec.LookPath("start-stop-daemon"); err != nil {
		t.Skip("start-stop-daemon is needed to start nats-server again")
	}
	if pid := serverPID(t); pid == 0 {
		t.Skip("no local nats-server process to restart")
	}
	bin := proctest.BuildPipe(t)
	in, outStream := name("rsin"), name("rsout")
	e.stream(t, in, in)
	t.Cleanup(func() { e.js.DeleteStream(context.Background(), outStream) })
	t.Cleanup(func() { e.purgeKey("nats_restart.nats_out.0") })
	text := fmt.Sprintf(`pipeline nats_restart {
  checkpoint = 300ms
  delivery   = exactly_once
}

source in: nats {
  url      = "${env:NATS_URL}"
  stream   = %q
  consumer = "pipe"
  batch    = 100
}

sink file_out: file {
  path   = "out.jsonl"
  format = json
}

sink nats_out: nats {
  url           = "${env:NATS_URL}"
  stream        = %q
  create_stream = true
  subjects      = [%q]
  subject      := %q + ".copy"
}

in -> [file_out, nats_out]
`, in, outStream, outStream+".>", outStream)
	k := proctest.NewKill(t, bin, "restart", text)
	out := filepath.Join(k.Dir, "out.jsonl")
	k.Env = []string{"NATS_URL=" + testURL()}
	k.Produce = func() error { return publishSpread(t.Context(), in+".events", n, 10*time.Second) }
	k.During = func(t *testing.T) {
		for range 2 {
			time.Sleep(time.Duration(2000+rand.IntN(1500)) * time.Millisecond)
			restartServer(t)
			t.Logf("restarted nats-server: %d lines", len(proctest.FileIDs(t, out)))
		}
	}
	k.Complete = func(t *testing.T) {
		proctest.WaitSettled(t, "file", func() int { return len(proctest.FileIDs(t, out)) }, n, time.Minute)
	}
	// Both sinks: each expected record once in the file and once in
	// the stream.
	k.Check = func(t *testing.T) proctest.Tallied {
		want := proctest.Want(0, int64(n))
		f, s := proctest.TallyIDs(want, proctest.FileIDs(t, out)), proctest.TallyIDs(want, e.ids(t, outStream))
		t.Logf("file sink: %+v, nats sink: %+v", f, s)
		return f.Plus(s)
	}
	k.Run(t)
}

// serverPID returns the pid of the local nats-server, or 0.
func serverPID(t *testing.T) int {
	out, err := osexec.Command("pgrep", "-x", "nats-server").Output()
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.Fields(string(out))[0])
	return pid
}

// restartServer stops nats-server (SIGTERM to its process, waiting for it
// to exit) and starts it again with the command it is started with.
func restartServer(t *testing.T) {
	t.Helper()
	pid := serverPID(t)
	if pid == 0 {
		t.Fatal("nats-server is not running")
	}
	if err := testkit.Stop(pid, 15*time.Second); err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	start := osexec.Command("start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/nats-server", "--",
		"-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log")
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("starting nats-server: %v\n%s", err, out)
	}
	// Wait until JetStream answers again.
	err := testkit.Await(30*time.Second, func() error {
		nc, err := nats.Connect(testURL())
		if err != nil {
			return err
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err
	})
	if err != nil {
		t.Fatalf("nats-server did not come back with JetStream: %v", err)
	}
}
