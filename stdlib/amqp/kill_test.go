package amqp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/internal/proctest"
)

// sourceStages read queue ${env:QUEUE} into a JSON lines file, each
// record with its redelivered flag and message id.
const sourceStages = `
source in: rabbitmq {
  url           = "${env:AMQP_URL}"
  queue         = "${env:QUEUE}"
  prefetch      = 300
  retry_timeout = 2m
}

transform tag: map {
  redelivered := meta.redelivered
  id          := meta.message_id
}

sink out: file {
  path     = "${env:OUT}"
  format   = json
  delivery = at_least_once
}

in -> tag -> out
`

// sinkStages publish COUNT generated records at RATE a second to queue
// ${env:OUT_QUEUE} through the default exchange.
const sinkStages = `
source gen: generate {
  count  = COUNT
  rate   = RATE
  fields = { n = seq(start = 0), tag = "x" }
}

sink pub: rabbitmq {
  url           = "${env:AMQP_URL}"
  routing_key   = "${env:OUT_QUEUE}"
  retry_timeout = 2m
  delivery      = at_least_once
}

gen -> pub
`

// pipelineText is a pipeline of stages, checkpointing every 300ms, that
// generates count records at rate a second (sinkStages).
func pipelineText(name string, count int, rate float64, stages ...string) string {
	text := "pipeline " + name + " {\n  checkpoint = 300ms\n}\n" + strings.Join(stages, "")
	return strings.NewReplacer("COUNT", fmt.Sprint(count), "RATE", fmt.Sprintf("%.1f", rate)).Replace(text)
}

// killEnv is what a kill or restart test runs: the pipe binary and a
// directory for pipeline files, state and output.
type killEnv struct {
	t    *testing.T
	bin  string
	root string
	dir  string
}

func newKillEnv(t *testing.T) *killEnv {
	return &killEnv{t: t, bin: proctest.BuildPipe(t), root: proctest.ModuleRoot(t), dir: t.TempDir()}
}

// start runs `pipe run` on the pipeline text with env.
func (k *killEnv) start(name, text string, env ...string) *osexec.Cmd {
	k.t.Helper()
	file := filepath.Join(k.dir, name+".pipe")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		k.t.Fatal(err)
	}
	cmd := osexec.Command(k.bin, "run", "-q", "--state-dir", filepath.Join(k.dir, "state-"+name), file)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = k.root
	cmd.Stderr = &proctest.LogWriter{T: k.t, Prefix: name + ": "}
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	return cmd
}

// publishSlowly publishes messages n = 0..total-1 to queue q over span,
// persistent, with message ids "m<n>", each confirmed by the broker; a
// broken connection (a server restart) is reconnected and the messages
// not confirmed are published again.
func publishSlowly(ctx context.Context, q string, total int, span time.Duration) error {
	var (
		cn   *amqp.Connection
		ch   *amqp.Channel
		next int
	)
	defer func() {
		if cn != nil {
			cn.Close()
		}
	}()
	per := span / time.Duration(max(total/50, 1))
	for next < total {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ch == nil {
			var err error
			if cn, err = amqp.Dial(testURL()); err == nil {
				if ch, err = cn.Channel(); err == nil {
					err = ch.Confirm(false)
				}
			}
			if err != nil {
				if cn != nil {
					cn.Close()
				}
				cn, ch = nil, nil
				time.Sleep(200 * time.Millisecond)
				continue
			}
		}
		// 50 at a time, all confirmed before the next 50.
		var dcs []*amqp.DeferredConfirmation
		end := min(next+50, total)
		for n := next; n < end; n++ {
			dc, err := ch.PublishWithDeferredConfirm("", q, false, false, amqp.Publishing{
				DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("m%d", n), Body: fmt.Appendf(nil, `{"n":%d}`, n)})
			if err != nil {
				break
			}
			dcs = append(dcs, dc)
		}
		ok := len(dcs) == end-next
		for _, dc := range dcs {
			ok = dc.Wait() && ok
		}
		if !ok {
			cn.Close()
			cn, ch = nil, nil
			continue
		}
		next = end
		time.Sleep(per)
	}
	return nil
}

// outLine is a line the source pipelines write.
type outLine struct {
	N           int64  `json:"n"`
	ID          string `json:"id"`
	Redelivered bool   `json:"redelivered"`
}

// checkSourceOutput checks that file holds every message 0..total-1 at
// least once, and each more than once only as redeliveries: one copy at
// most was not flagged redelivered. It returns how many lines are
// duplicates.
func checkSourceOutput(t *testing.T, file string, total int) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fresh := map[int64]int{}
	copies := map[int64]int{}
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l outLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d: %v: %s", lines+1, err, sc.Bytes())
		}
		lines++
		if l.ID != fmt.Sprintf("m%d", l.N) {
			t.Fatalf("line %d: message id %q for n=%d", lines, l.ID, l.N)
		}
		copies[l.N]++
		if !l.Redelivered {
			fresh[l.N]++
		}
	}
	for n := range int64(total) {
		if copies[n] == 0 {
			t.Fatalf("message %d is missing from the output (%d lines, %d distinct)", n, lines, len(copies))
		}
		if fresh[n] > 1 {
			t.Fatalf("message %d was written %d times without being a redelivery", n, fresh[n])
		}
	}
	if len(copies) != total {
		t.Fatalf("%d distinct messages in the output, want %d", len(copies), total)
	}
	return lines - total
}

// waitLines waits until file has at least want lines and no more come for
// a while.
func waitLines(t *testing.T, file string, want int, timeout time.Duration) {
	t.Helper()
	proctest.WaitSettled(t, file+" lines", func() int {
		b, _ := os.ReadFile(file)
		return bytes.Count(b, []byte{'\n'})
	}, want, timeout)
}

// TestKillRabbitMQSource SIGKILLs `pipe run` of a queue -> file pipeline
// at random moments while messages are published, restarts it, and checks
// that every message published arrives (at least once: the source gives
// at_least_once) and that a message is written again only as a
// redelivery; the queue is empty at the end (everything was
// acknowledged). Set PIPE_KILLTEST=1 to run it.
func TestKillRabbitMQSource(t *testing.T) {
	total, kills := proctest.KillTest(t, 3000, 12)
	e := newRMQ(t)
	k := newKillEnv(t)
	q := e.queue("in")
	out := filepath.Join(k.dir, "out.jsonl")
	env := []string{"AMQP_URL=" + testURL(), "QUEUE=" + q, "OUT=" + out}
	text := pipelineText("rmq_source_kill", 0, 0, sourceStages)
	span := time.Duration(kills) * 1500 * time.Millisecond
	published := make(chan error, 1)
	go func() { published <- publishSlowly(t.Context(), q, total, span) }()
	for i := range kills {
		cmd := k.start("source", text, env...)
		time.Sleep(time.Duration(700+rand.IntN(1500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("kill %d: queue holds %d", i+1, e.count(q))
	}
	cmd := k.start("source", text, env...)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	waitLines(t, out, total, time.Minute)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pipe run: %v", err)
	}
	dups := checkSourceOutput(t, out, total)
	t.Logf("%d messages, %d kills: all arrived, %d written again as redeliveries", total, kills, dups)
	if n := e.count(q); n != 0 {
		t.Fatalf("queue holds %d messages after a clean stop: not acknowledged", n)
	}
}

// checkQueue drains q and checks that it held every generated record
// 0..total-1, and that copies share their message id (derived from the
// record's position) and body, so consumers can drop them. It returns how
// many messages are duplicates.
func checkQueue(t *testing.T, e *rmq, q string, total int) int {
	t.Helper()
	byID := map[string]string{}
	ns := map[int64]string{}
	msgs := e.drain(q, 2*time.Second)
	for _, d := range msgs {
		var v struct {
			N   int64  `json:"n"`
			Tag string `json:"tag"`
		}
		if err := json.Unmarshal(d.Body, &v); err != nil || v.Tag != "x" {
			t.Fatalf("message %s: %v: %s", d.MessageId, err, d.Body)
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Fatalf("message %s not persistent", d.MessageId)
		}
		if b, ok := byID[d.MessageId]; ok && b != string(d.Body) {
			t.Fatalf("message id %s on two bodies: %s and %s", d.MessageId, b, d.Body)
		}
		if id, ok := ns[v.N]; ok && id != d.MessageId {
			t.Fatalf("record %d published with two message ids: %s and %s", v.N, id, d.MessageId)
		}
		byID[d.MessageId], ns[v.N] = string(d.Body), d.MessageId
	}
	for n := range int64(total) {
		if _, ok := ns[n]; !ok {
			t.Fatalf("record %d is missing from the queue (%d messages, %d distinct)", n, len(msgs), len(ns))
		}
	}
	if len(ns) != total {
		t.Fatalf("%d distinct records in the queue, want %d", len(ns), total)
	}
	return len(msgs) - total
}

// TestKillRabbitMQSink SIGKILLs `pipe run` of a generate -> rabbitmq
// pipeline at random moments, restarts it until it ends, drains the queue
// and checks that every record is there (at least once), copies with the
// same message id and body. Set PIPE_KILLTEST=1 to run it.
func TestKillRabbitMQSink(t *testing.T) {
	total, kills := proctest.KillTest(t, 3000, 12)
	e := newRMQ(t)
	k := newKillEnv(t)
	q := e.queue("out")
	rate := float64(total) / (float64(kills) * 1.2)
	env := []string{"AMQP_URL=" + testURL(), "OUT_QUEUE=" + q}
	text := pipelineText("rmq_sink_kill", total, rate, sinkStages)
	for i := range kills {
		cmd := k.start("sink", text, env...)
		time.Sleep(time.Duration(700+rand.IntN(1500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("kill %d: queue holds %d", i+1, e.count(q))
	}
	cmd := k.start("sink", text, env...)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pipe run: %v", err)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("pipe run did not end within a minute")
	}
	dups := checkQueue(t, e, q, total)
	t.Logf("%d records, %d kills: all in the queue, %d published again (same message id)", total, kills, dups)
}
