package amqp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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

// killRound is a kill round of pipeline text named name (proctest.Kill),
// each run living 0.7 to 2.2 s before its kill.
func killRound(t *testing.T, name, text string, kills int, env ...string) *proctest.Kill {
	k := proctest.NewKill(t, proctest.BuildPipe(t), name, text)
	k.Kills, k.Env = kills, env
	k.Life = func() time.Duration { return time.Duration(700+rand.IntN(1500)) * time.Millisecond }
	return k
}

// publishSlowly publishes messages n = 0..total-1 to queue q over span,
// persistent, with message ids "m<n>", each confirmed by the broker; a
// broken connection (a server restart) is reconnected and the messages
// not confirmed are published again.
func publishSlowly(ctx context.Context, q string, total int, span time.Duration, resent map[int64]int) error {
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
			// The batch goes again from next: each message of it
			// published may now arrive twice.
			for i := range dcs {
				resent[int64(next+i)]++
			}
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

// checkSourceOutput tallies the messages in file against 0..total-1
// (proctest.Tallied), and fails t on a message written under another
// message id, or more than once other than as a redelivery: one copy at
// most was not flagged redelivered, or one more for each time
// publishSlowly published it again (resent).
func checkSourceOutput(t *testing.T, file string, total int, resent map[int64]int) proctest.Tallied {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fresh := map[int64]int{}
	var ns []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l outLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d: %v: %s", len(ns)+1, err, sc.Bytes())
		}
		ns = append(ns, l.N)
		if l.ID != fmt.Sprintf("m%d", l.N) {
			t.Fatalf("line %d: message id %q for n=%d", len(ns), l.ID, l.N)
		}
		if !l.Redelivered {
			if fresh[l.N]++; fresh[l.N] > 1+resent[l.N] {
				t.Fatalf("message %d was written %d times without being a redelivery (published %d times)", l.N, fresh[l.N], 1+resent[l.N])
			}
		}
	}
	return proctest.TallyIDs(proctest.Want(0, int64(total)), ns)
}

// checkConsumed checks the file a source pipeline wrote (checkSourceOutput)
// and that queue q is empty after the clean stop: everything was
// acknowledged.
func checkConsumed(t *testing.T, e *rmq, q, file string, total int, resent map[int64]int) proctest.Tallied {
	t.Helper()
	got := checkSourceOutput(t, file, total, resent)
	if n := e.count(q); n != 0 {
		t.Fatalf("queue %s holds %d messages after a clean stop: not acknowledged", q, n)
	}
	return got
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
	q := e.queue("in")
	text := pipelineText("rmq_source_kill", 0, 0, sourceStages)
	k := killRound(t, "source", text, kills, "AMQP_URL="+testURL(), "QUEUE="+q)
	out := filepath.Join(k.Dir, "out.jsonl")
	k.Env = append(k.Env, "OUT="+out)
	k.Doubles = true          // redeliveries
	resent := map[int64]int{} // Produce writes it, Check reads it after
	k.Produce = func() error {
		return publishSlowly(t.Context(), q, total, time.Duration(kills)*1500*time.Millisecond, resent)
	}
	k.Progress = func() string { return fmt.Sprintf("queue holds %d", e.count(q)) }
	k.Complete = func(t *testing.T) { waitLines(t, out, total, time.Minute) }
	k.Check = func(t *testing.T) proctest.Tallied { return checkConsumed(t, e, q, out, total, resent) }
	k.Run(t)
}

// checkQueue drains q and tallies the generated records in it against
// 0..total-1 (proctest.Tallied), failing t unless copies share their
// message id (derived from the record's position) and body, so consumers
// can drop them.
func checkQueue(t *testing.T, e *rmq, q string, total int) proctest.Tallied {
	t.Helper()
	byID := map[string]string{}
	ids := map[int64]string{}
	var ns []int64
	for _, d := range e.drain(q, 2*time.Second) {
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
		if id, ok := ids[v.N]; ok && id != d.MessageId {
			t.Fatalf("record %d published with two message ids: %s and %s", v.N, id, d.MessageId)
		}
		byID[d.MessageId], ids[v.N] = string(d.Body), d.MessageId
		ns = append(ns, v.N)
	}
	return proctest.TallyIDs(proctest.Want(0, int64(total)), ns)
}

// TestKillRabbitMQSink SIGKILLs `pipe run` of a generate -> rabbitmq
// pipeline at random moments, restarts it until it ends, drains the queue
// and checks that every record is there (at least once), copies with the
// same message id and body. Set PIPE_KILLTEST=1 to run it.
func TestKillRabbitMQSink(t *testing.T) {
	total, kills := proctest.KillTest(t, 3000, 12)
	e := newRMQ(t)
	q := e.queue("out")
	rate := float64(total) / (float64(kills) * 1.2)
	k := killRound(t, "sink", pipelineText("rmq_sink_kill", total, rate, sinkStages), kills,
		"AMQP_URL="+testURL(), "OUT_QUEUE="+q)
	k.Ends = true    // the generator's count
	k.Doubles = true // published again, with the same message id
	k.Progress = func() string { return fmt.Sprintf("queue holds %d", e.count(q)) }
	k.Check = func(t *testing.T) proctest.Tallied { return checkQueue(t, e, q, total) }
	k.Run(t)
}
