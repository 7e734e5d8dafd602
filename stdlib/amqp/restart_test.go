package amqp

import (
	"context"
	osexec "os/exec"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
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
	err := testkit.Await(time.Minute, func() error {
		cn, err := amqp.Dial(testURL())
		if err == nil {
			cn.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("rabbitmq not back a minute after rabbitmq-server -detached: %v", err)
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
	in, outQ := e.queue("in"), e.queue("out")
	span := 12 * time.Second
	text := pipelineText("rmq_restart", total, float64(total)/span.Seconds(), sourceStages, sinkStages)
	k := killRound(t, "restart", text, 0, "AMQP_URL="+testURL(), "QUEUE="+in, "OUT_QUEUE="+outQ)
	out := filepath.Join(k.Dir, "out.jsonl")
	k.Env = append(k.Env, "OUT="+out)
	k.Doubles = true
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	resent := map[int64]int{} // Produce writes it, Check reads it after
	k.Produce = func() error { return publishSlowly(ctx, in, total, span, resent) }
	k.During = func(t *testing.T) {
		time.Sleep(3 * time.Second)
		restartRabbitMQ(t)
		e.reconnect(ctx)
	}
	k.Complete = func(t *testing.T) {
		waitLines(t, out, total, time.Minute)
		// The generated records are all published once the file is
		// complete and the queue stops growing.
		proctest.WaitSettled(t, "queue "+outQ, func() int { return e.count(outQ) }, total, time.Minute)
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		consumed, published := checkConsumed(t, e, in, out, total, resent), checkQueue(t, e, outQ, total)
		t.Logf("across a restart: consumed %+v (%d messages published again), published %+v", consumed, len(resent), published)
		return consumed.Plus(published)
	}
	k.Run(t)
}
