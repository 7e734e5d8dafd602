package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
)

// killRound is a kill round of pipeline text named name (proctest.Kill),
// each run living 0.5 to 2.5 s before its kill. Its directory holds the
// file out.jsonl the source pipelines write.
func killRound(t *testing.T, bin, name, text string, kills int) *proctest.Kill {
	k := proctest.NewKill(t, bin, name, text)
	k.Kills = kills
	k.Life = func() time.Duration { return time.Duration(500+rand.IntN(2000)) * time.Millisecond }
	k.Doubles = true // MQTT gives no identity to drop copies by
	return k
}

// publisher returns a function that waits until the pipeline's source has
// subscribed to topic (waitSubscribed: the channel returned is closed
// then) and then publishes n messages {"id": i} at QoS 1 to topic/<i%3>,
// one every span/n, each until the broker acknowledges it: a message whose
// acknowledgement is lost (the broker went down) is published again.
func publisher(t *testing.T, topic, out string, n int, span time.Duration) (func() error, <-chan struct{}) {
	cl := testClient(t, uniq("pipe-pub"), true, nil)
	subscribed := make(chan struct{})
	return func() error {
		if err := waitSubscribed(cl, topic, out); err != nil {
			return err
		}
		close(subscribed)
		for i := range n {
			// No catching up after an outage: a burst would overflow
			// Mosquitto's queue of the session (max_queued_messages,
			// 1000 by default), which drops what does not fit.
			time.Sleep(span / time.Duration(n))
			deadline := time.Now().Add(time.Minute)
			for {
				tok := cl.Publish(topic+"/"+strconv.Itoa(i%3), 1, false, fmt.Sprintf(`{"id":%d}`, i))
				if tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("message %d not acknowledged in a minute: %v", i, tok.Error())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return nil
	}, subscribed
}

// probeID is the id of waitSubscribed's probe messages.
const probeID = -1

// waitSubscribed publishes a probe {"id": -1} to topic until it shows in
// the file at out: the pipeline's source has subscribed, and its session
// keeps from then on what is published while no process runs.
func waitSubscribed(cl paho.Client, topic, out string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		tok := cl.Publish(topic+"/probe", 1, false, fmt.Sprintf(`{"id":%d}`, probeID))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for range 10 {
			time.Sleep(50 * time.Millisecond)
			b, _ := os.ReadFile(out)
			if strings.Contains(string(b), fmt.Sprintf(`"id":%d`, probeID)) {
				return nil
			}
		}
	}
	return errors.New("the pipeline did not subscribe in 30s")
}

// fileIDs returns the ids in the JSON lines file at out, the probes left
// out.
func fileIDs(t *testing.T, out string) []int64 {
	return slices.DeleteFunc(proctest.FileIDs(t, out), func(id int64) bool { return id == probeID })
}

// consumed sets k up to tally the messages 0..n-1 in its out.jsonl.
func consumed(t *testing.T, k *proctest.Kill, n int) {
	out := filepath.Join(k.Dir, "out.jsonl")
	k.Progress = func() string { return fmt.Sprintf("%d lines", len(proctest.FileIDs(t, out))) }
	k.Complete = func(t *testing.T) {
		proctest.WaitSettled(t, "lines with an id", func() int { return len(fileIDs(t, out)) }, n, 30*time.Second)
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		return proctest.TallyIDs(proctest.Want(0, int64(n)), fileIDs(t, out))
	}
}

// sourcePipeline reads topic/# into the file out.jsonl beside the
// pipeline, checkpointing often.
func sourcePipeline(topic, clientID string) string {
	return fmt.Sprintf(`pipeline mqtt_kill {
  delivery   = at_least_once
  checkpoint = 300ms
}

source in: mqtt {
  brokers       = [%q]
  client_id     = %q
  topic         = %q
  retry_timeout = 1m
}

sink out: file {
  path = "out.jsonl"
}

in -> out
`, testBroker(), clientID, topic+"/#")
}

// TestKillMQTTSource SIGKILLs `pipe run` of MQTT -> file at random
// moments while messages are published at QoS 1, restarts it, and checks
// that every message published arrives in the file at least once: a
// message is acknowledged to the broker only after the checkpoint that
// made it durable in the file, so one read when the process died comes
// again from the session. Duplicates are counted, not refused: MQTT gives
// no identity to drop them by. Set PIPE_KILLTEST=1 to run it.
func TestKillMQTTSource(t *testing.T) {
	n, kills := proctest.KillTest(t, 3000, 12)
	needBroker(t)
	topic, id := uniq("pipe-kill"), uniq("pipe-kill")
	t.Cleanup(func() { dropSession(t, id) })
	k := killRound(t, proctest.BuildPipe(t), "source", sourcePipeline(topic, id), kills)
	consumed(t, k, n)
	// From the first subscription on, the session keeps what is
	// published while no process runs.
	k.Produce, _ = publisher(t, topic, filepath.Join(k.Dir, "out.jsonl"), n, time.Duration(kills)*1200*time.Millisecond)
	k.Run(t)
}

// sinkPipeline generates n records {"id": i} at rate per second and
// publishes them to topic/<id % 4> at QoS 1.
func sinkPipeline(topic string, n, rate int) string {
	return fmt.Sprintf(`pipeline mqtt_sink_kill {
  delivery   = at_least_once
  checkpoint = 300ms
}

source gen: generate {
  count  = %d
  rate   = %d
  batch  = 10
  fields = { id = seq(start = 0) }
}

sink out: mqtt {
  brokers       = [%q]
  topic        := %q + string(id %% 4)
  qos           = 1
  retry_timeout = 1m
}

gen -> out
`, n, rate, testBroker(), topic+"/")
}

// subscriber subscribes to topic/# at QoS 1 under a persistent session
// (kept across broker restarts) and collects the ids it receives.
type subscriber struct {
	mu  sync.Mutex
	ids []int64
	bad []string
}

func newSubscriber(t *testing.T, topic string) *subscriber {
	s := &subscriber{}
	id := uniq("pipe-sub")
	t.Cleanup(func() { dropSession(t, id) })
	cl := testClient(t, id, false, func(_ paho.Client, m paho.Message) {
		var r struct{ ID *int64 }
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := json.Unmarshal(m.Payload(), &r); err != nil || r.ID == nil || m.Topic() != topic+"/"+strconv.FormatInt(*r.ID%4, 10) {
			s.bad = append(s.bad, m.Topic()+" "+string(m.Payload()))
			return
		}
		s.ids = append(s.ids, *r.ID)
	})
	if tok := cl.Subscribe(topic+"/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	return s
}

func (s *subscriber) snapshot() ([]int64, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids), slices.Clone(s.bad)
}

// expect sets k up to tally the messages 0..n-1 the subscriber receives,
// waiting for them at most wait, and to fail on one not as published
// (another topic than its id gives).
func (s *subscriber) expect(k *proctest.Kill, n int, wait time.Duration) {
	k.Progress = func() string {
		ids, _ := s.snapshot()
		return fmt.Sprintf("%d messages received", len(ids))
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		want := proctest.Want(0, int64(n))
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			if ids, _ := s.snapshot(); proctest.TallyIDs(want, ids).Missing == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // late copies
		ids, bad := s.snapshot()
		if len(bad) > 0 {
			t.Errorf("%d messages not as published, first %q", len(bad), bad[0])
		}
		return proctest.TallyIDs(want, ids)
	}
}

// TestKillMQTTSink SIGKILLs `pipe run` of generate -> MQTT at random
// moments, restarts it, and checks with a subscriber of its own (QoS 1,
// persistent session) that every generated record was published at least
// once, to the topic its expression gave: a checkpoint completes only
// once the broker acknowledged every message before it, so what a killed
// process may not have published comes again from the generator. Set
// PIPE_KILLTEST=1 to run it.
func TestKillMQTTSink(t *testing.T) {
	n, kills := proctest.KillTest(t, 3000, 12)
	needBroker(t)
	topic := uniq("pipe-kill")
	sub := newSubscriber(t, topic)
	rate := max(n/(kills*2), 1) // the records outlast the kill loop
	k := killRound(t, proctest.BuildPipe(t), "sink", sinkPipeline(topic, n, rate), kills)
	k.Ends = true
	sub.expect(k, n, 10*time.Second)
	k.Run(t)
}

// restartMosquitto stops the test broker (SIGTERM: Mosquitto saves its
// persistence file on the way out) and starts it again with the command
// of the machine's setup, then waits until it accepts connections.
func restartMosquitto(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/run/mosquitto/mosquitto.pid")
	if err != nil {
		t.Fatalf("mosquitto pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := testkit.Stop(pid, 10*time.Second); err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
	t.Logf("mosquitto stopped")
	time.Sleep(time.Second)
	if out, err := osexec.Command("mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf").CombinedOutput(); err != nil {
		t.Fatalf("starting mosquitto: %v\n%s", err, out)
	}
	if err := testkit.Await(10*time.Second, testkit.Dialable(testBroker())); err != nil {
		t.Fatalf("mosquitto did not come back: %v", err)
	}
	t.Logf("mosquitto started again")
}

// TestServerRestartMQTT restarts Mosquitto twice while `pipe run` runs,
// once under MQTT -> file (the source reconnects to its session and gets
// what was not acknowledged) and once under generate -> MQTT (the sink
// publishes again what the lost connection left unacknowledged), and
// checks that nothing is lost. Mosquitto keeps sessions and their queued
// QoS 1 messages across the restart because /etc/mosquitto/mosquitto.conf
// sets persistence true, and a SIGTERM makes it save them. Set
// PIPE_KILLTEST=1 to run it (it restarts the machine's Mosquitto).
func TestServerRestartMQTT(t *testing.T) {
	n, _ := proctest.KillTest(t, 2000, 0)
	needBroker(t)
	if os.Geteuid() != 0 {
		t.Skip("restarting mosquitto needs root")
	}
	bin := proctest.BuildPipe(t)
	restarts := func(t *testing.T) {
		for range 2 {
			time.Sleep(time.Duration(1500+rand.IntN(1000)) * time.Millisecond)
			restartMosquitto(t)
		}
	}
	t.Run("source", func(t *testing.T) {
		topic, id := uniq("pipe-restart"), uniq("pipe-restart")
		t.Cleanup(func() { dropSession(t, id) })
		k := killRound(t, bin, "run", sourcePipeline(topic, id), 0)
		consumed(t, k, n)
		var subscribed <-chan struct{}
		k.Produce, subscribed = publisher(t, topic, filepath.Join(k.Dir, "out.jsonl"), n, 8*time.Second)
		k.During = func(t *testing.T) {
			select {
			case <-subscribed:
			case <-time.After(30 * time.Second):
				t.Fatal("the pipeline did not subscribe in 30s")
			}
			restarts(t)
		}
		k.Run(t)
	})
	t.Run("sink", func(t *testing.T) {
		topic := uniq("pipe-restart")
		sub := newSubscriber(t, topic)
		// What the sink could not publish while the broker was down
		// follows in a burst; the test's subscriber, reconnecting too,
		// must not be more than Mosquitto's queue (1000) behind.
		k := killRound(t, bin, "run", sinkPipeline(topic, n, n/16), 0)
		k.Ends = true
		k.During = restarts
		sub.expect(k, n, 20*time.Second)
		k.Run(t)
	})
}
