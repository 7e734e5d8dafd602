package amqp

import (
	"context"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/internal/proctest"
)

// restartRabbitMQ stops the local RabbitMQ (rabbitmqctl stop) and starts
// it again (rabbitmq-server -detached), then waits until it takes
// connections, at most a minute.
func restartRabbitMQ(t *testing.T) {
	t.Helper()
	start := time.Now()
	if out, err := osexec.Command("rabbitmqctl", "stop").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl stop: %v: %s", err, out)
	}
	stopped := time.Since(start)
	if out, err := osexec.Command("rabbitmq-server", "-detached").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmq-server -detached: %v: %s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		cn, err := amqp.Dial(testURL())
		if err == nil {
			cn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rabbitmq not back a minute after rabbitmq-server -detached: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("rabbitmq restarted: stopped in %v, up again after %v", stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestServerRestartRabbitMQ stops and starts the local RabbitMQ in the
// middle of a run that consumes one queue into a file and publishes
// generated records to another: both reconnect with backoff and carry
// on, every message published to the first queue reaches the file and
// every generated record reaches the second queue (at least once, copies
// only as redeliveries or with the same message id). Durable queues and
// persistent messages keep what the broker held across the restart. It
// restarts the machine's RabbitMQ, so it runs only with PIPE_KILLTEST=1.
func TestServerRestartRabbitMQ(t *testing.T) {
	total, _ := proctest.KillTest(t, 3000, 0)
	e := newRMQ(t)
	k := newKillEnv(t)
	in, outQ := e.queue("in"), e.queue("out")
	out := filepath.Join(k.dir, "out.jsonl")
	env := []string{"AMQP_URL=" + testURL(), "QUEUE=" + in, "OUT_QUEUE=" + outQ, "OUT=" + out}
	span := 12 * time.Second
	text := pipelineText("rmq_restart", total, float64(total)/span.Seconds(), sourceStages, sinkStages)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	published := make(chan error, 1)
	go func() { published <- publishSlowly(ctx, in, total, span) }()
	cmd := k.start("restart", text, env...)
	time.Sleep(3 * time.Second)
	restartRabbitMQ(t)
	e.reconnect(ctx)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	waitLines(t, out, total, time.Minute)
	// The generated records are all published once the file is complete
	// and the queue stops growing.
	deadline := time.Now().Add(time.Minute)
	for last := -1; ; {
		n := e.count(outQ)
		if n >= total && n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s holds %d messages, want at least %d", outQ, n, total)
		}
		last = n
		time.Sleep(time.Second)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pipe run: %v", err)
	}
	dups := checkSourceOutput(t, out, total)
	pubDups := checkQueue(t, e, outQ, total)
	t.Logf("across a restart: %d messages consumed (%d again as redeliveries), %d records published (%d again)", total, dups, total, pubDups)
	if n := e.count(in); n != 0 {
		t.Fatalf("queue %s holds %d messages after a clean stop: not acknowledged", in, n)
	}
}
