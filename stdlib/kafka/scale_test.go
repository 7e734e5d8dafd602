package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
)

// TestScaleOut runs examples/kafka_to_kafka.pipe (exactly_once) in three
// `pipe run` processes of one consumer group, each with a state directory
// of its own as on three machines, while input arrives. Processes are
// SIGKILLed or stopped and restarted at random, so partitions move between
// them all the time. A read_committed consumer of the output must see every
// expected record exactly once. Set PIPE_KILLTEST=1 to run it;
// PIPE_KILLTEST_RECORDS and PIPE_KILLTEST_KILLS scale it.
func TestScaleOut(t *testing.T) {
	n, kills := proctest.KillTest(t, 100000, 20)
	h := newProcHarness(t)
	in, out := uniq("scale-in"), uniq("scale-out")
	newTopic(t, h.brokers, in, 8)
	newTopic(t, h.brokers, out, 4)
	file := h.pipeline(t, "exactly_once")
	want := proctest.KeptEvents(n)
	produced := make(chan error, 1)
	go func() {
		produced <- proctest.ProduceEvents(context.Background(), nil, h.brokers, in, 0, n, time.Duration(kills)*2500*time.Millisecond)
	}()
	env := h.env(h.brokers, in, out, uniq("scale"))

	const slots = 3
	procs := make([]*osexec.Cmd, slots)
	exited := make([]chan error, slots)
	start := func(i int) {
		cmd := h.start(t, file, env, filepath.Join(h.dir, fmt.Sprintf("state-%d", i)), fmt.Sprintf("p%d: ", i))
		ch := make(chan error, 1)
		go func() { ch <- cmd.Wait() }()
		procs[i], exited[i] = cmd, ch
	}
	for i := range slots {
		start(i)
		time.Sleep(1500 * time.Millisecond)
	}
	selfExits, killed, stopped := 0, 0, 0
	for range kills {
		time.Sleep(time.Duration(1000+rand.IntN(2000)) * time.Millisecond)
		for i := range slots {
			select {
			case err := <-exited[i]:
				t.Logf("process %d exited by itself: %v", i, err)
				selfExits++
				start(i)
			default:
			}
		}
		i := rand.IntN(slots)
		if rand.IntN(4) == 0 {
			procs[i].Process.Signal(syscall.SIGTERM) // leaves the group
			stopped++
		} else {
			procs[i].Process.Signal(syscall.SIGKILL)
			killed++
		}
		<-exited[i]
		if rand.IntN(2) == 0 {
			time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		}
		start(i)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	got := readOutput(t, h.brokers, out, len(want), 3*time.Minute)
	for i := range slots {
		procs[i].Process.Signal(syscall.SIGTERM)
	}
	for i := range slots {
		if err := <-exited[i]; err != nil {
			t.Logf("process %d: %v", i, err)
		}
	}
	t.Logf("%d processes: %d SIGKILLs, %d SIGTERMs, %d exits on their own", slots, killed, stopped, selfExits)
	checkEvents(t, "exactly_once", n, want, got, func(topic string, partition int, from, to int64) {
		dumpLog(t, h.brokers, topic, partition, from, to)
	})
}
