package mqtt

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/stdlib"
)

// The benchmarks measure against the Mosquitto of the tests, each pipe
// component beside a plain paho loop doing the same job, in the same run
// (bench/RESULTS-mqtt.md):
//
//	go test -run '^$' -bench . -benchtime 20000x ./stdlib/mqtt/

// benchWindow is how far a benchmark's publisher runs ahead of what was
// consumed: Mosquitto drops QoS 1 messages queued for a session beyond
// max_queued_messages (1000 by default; with 800 ahead the bridge below
// still saw drops on Mosquitto 2.0.11, with 300 none).
const benchWindow = 300

// payload is the benchmark message: a small JSON object.
func payload(i int) string {
	return fmt.Sprintf(`{"id":%d,"user":"u%d","amount":%d.5,"country":"NL"}`, i, i%1000, i%500)
}

// flowPublisher publishes n messages to topic at QoS 1 on its own
// connection, never more than benchWindow ahead of *consumed.
func flowPublisher(b *testing.B, topic string, n int, consumed *atomic.Int64) chan error {
	cl := testClient(b, uniq("pipe-bpub"), true, nil)
	done := make(chan error, 1)
	go func() {
		var toks []paho.Token
		for i := range n {
			for int64(i)-consumed.Load() >= benchWindow {
				time.Sleep(100 * time.Microsecond)
			}
			toks = append(toks, cl.Publish(topic, 1, false, payload(i)))
			if len(toks) == 500 {
				for _, t := range toks {
					t.Wait()
				}
				toks = toks[:0]
			}
		}
		for _, t := range toks {
			if t.Wait(); t.Error() != nil {
				done <- t.Error()
				return
			}
		}
		done <- nil
	}()
	return done
}

// BenchmarkSource reads b.N messages published at QoS 1 as they come:
// "pipe" is the source, committing after every Read as a checkpoint
// would (acknowledging what it read), "paho" a plain subscriber whose
// handler acknowledges each message.
func BenchmarkSource(b *testing.B) {
	needBroker(b)
	b.Run("pipe", func(b *testing.B) {
		topic, id := uniq("pipe-bench"), uniq("pipe-bench")
		b.Cleanup(func() { dropSession(b, id) })
		s, err := newSource(config(b, SourceSpec, "in", map[string]any{"topic": topic, "client_id": id}))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Open(b.Context(), nil); err != nil {
			b.Fatal(err)
		}
		defer s.Close(b.Context())
		var consumed atomic.Int64
		b.ResetTimer()
		done := flowPublisher(b, topic, b.N, &consumed)
		for consumed.Load() < int64(b.N) {
			rs, err := s.Read(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			for i := range rs {
				if rs[i].Err != nil {
					b.Fatal(rs[i].Err)
				}
			}
			if len(rs) > 0 {
				if err := s.Commit(b.Context(), []stdlib.Position{rs[len(rs)-1].Pos}); err != nil {
					b.Fatal(err)
				}
			}
			consumed.Add(int64(len(rs)))
		}
		b.StopTimer()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("paho", func(b *testing.B) {
		topic, id := uniq("pipe-bench"), uniq("pipe-bench")
		b.Cleanup(func() { dropSession(b, id) })
		var consumed atomic.Int64
		all := make(chan struct{})
		cl := testClient(b, id, false, func(_ paho.Client, m paho.Message) {
			if consumed.Add(1) == int64(b.N) {
				close(all)
			}
		})
		if tok := cl.Subscribe(topic, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		b.ResetTimer()
		done := flowPublisher(b, topic, b.N, &consumed)
		<-all
		b.StopTimer()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkSink publishes b.N records at QoS 1 in batches of 1,000,
// waiting for the broker's acknowledgements every 10,000 (a checkpoint):
// "pipe" through the sink (encoding each record as JSON), "paho" through
// a plain loop publishing the same payloads.
func BenchmarkSink(b *testing.B) {
	needBroker(b)
	const batch, every = 1000, 10000
	b.Run("pipe", func(b *testing.B) {
		topic := uniq("pipe-bench")
		s, err := newSink(config(b, SinkSpec, "out", map[string]any{"topic": topic}))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Open(b.Context()); err != nil {
			b.Fatal(err)
		}
		defer s.Close(b.Context())
		recs := make([]stdlib.Record, batch)
		b.ResetTimer()
		for done := 0; done < b.N; {
			n := min(batch, b.N-done)
			b.StopTimer()
			for i := range n {
				id := done + i
				recs[i] = stdlib.Record{Value: map[string]any{"id": int64(id), "user": fmt.Sprintf("u%d", id%1000),
					"amount": float64(id%500) + 0.5, "country": "NL"}}
			}
			b.StartTimer()
			if err := s.Write(b.Context(), recs[:n]); err != nil {
				b.Fatal(err)
			}
			done += n
			if done%every == 0 || done == b.N {
				if err := s.Checkpoint(b.Context(), stdlib.Checkpoint{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("paho", func(b *testing.B) {
		topic := uniq("pipe-bench")
		cl := testClient(b, uniq("pipe-bpub"), true, nil)
		var toks []paho.Token
		b.ResetTimer()
		for i := range b.N {
			toks = append(toks, cl.Publish(topic, 1, false, payload(i)))
			if (i+1)%every == 0 || i+1 == b.N {
				for _, t := range toks {
					if t.Wait(); t.Error() != nil {
						b.Fatal(t.Error())
					}
				}
				toks = toks[:0]
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkBridge moves b.N messages from one topic to another, as they
// are published at QoS 1, measured by a subscriber of the output topic:
// "pipe" is `pipe run` of mqtt -> mqtt (checkpoint 1s; the source takes a
// checkpoint whenever Mosquitto's 20 unacknowledged messages wait, and
// acknowledges them only then), "paho" a plain loop that publishes each
// message it receives and acknowledges it once the broker acknowledged
// the copy. Set PIPE_BENCH_PIPELINE=1 to run it (it builds the binary).
func BenchmarkBridge(b *testing.B) {
	if os.Getenv("PIPE_BENCH_PIPELINE") != "1" {
		b.Skip("set PIPE_BENCH_PIPELINE=1 to run pipe run in a benchmark")
	}
	needBroker(b)
	bin := proctest.BuildPipe(b)
	run := func(b *testing.B, start func(in, out string) func()) {
		in, out := uniq("pipe-bench-in"), uniq("pipe-bench-out")
		var consumed atomic.Int64
		all := make(chan struct{})
		sub := testClient(b, uniq("pipe-bsub"), true, func(_ paho.Client, m paho.Message) {
			if consumed.Add(1) == int64(b.N) {
				close(all)
			}
		})
		if tok := sub.Subscribe(out, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		stop := start(in, out)
		defer stop()
		b.ResetTimer()
		done := flowPublisher(b, in, b.N, &consumed)
		select {
		case <-all:
		case <-time.After(5 * time.Minute):
			b.Fatalf("%d of %d messages bridged", consumed.Load(), b.N)
		}
		b.StopTimer()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("pipe", func(b *testing.B) {
		run(b, func(in, out string) func() {
			id := uniq("pipe-bench")
			dir := b.TempDir()
			file := filepath.Join(dir, "bridge.pipe")
			text := fmt.Sprintf(`pipeline mqtt_bridge {
  delivery   = at_least_once
  checkpoint = 1s
}

source in: mqtt {
  brokers   = [%q]
  client_id = %q
  topic     = %q
  format    = bytes
}

sink out: mqtt {
  brokers = [%q]
  topic   = %q
  format  = bytes
}

in -> out
`, testBroker(), id, in, testBroker(), out)
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				b.Fatal(err)
			}
			cmd := osexec.Command(bin, "run", "-q", "--state-dir", filepath.Join(dir, "state"), file)
			cmd.Stderr = &proctest.LogWriter{T: b, Prefix: "pipe: "}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(2 * time.Second) // pipe run compiles, connects and subscribes
			return func() {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
				dropSession(b, id)
			}
		})
	})
	b.Run("paho", func(b *testing.B) {
		run(b, func(in, out string) func() {
			id := uniq("pipe-bench")
			pub := testClient(b, uniq("pipe-bpub"), true, nil)
			o := paho.NewClientOptions().AddBroker("tcp://" + testBroker()).SetClientID(id).SetCleanSession(false).
				SetAutoAckDisabled(true).SetProtocolVersion(4)
			o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
				tok := pub.Publish(out, 1, false, m.Payload())
				go func() { tok.Wait(); m.Ack() }()
			})
			cl := paho.NewClient(o)
			if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				b.Fatal(tok.Error())
			}
			if tok := cl.Subscribe(in, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				b.Fatal(tok.Error())
			}
			return func() {
				cl.Disconnect(100)
				dropSession(b, id)
			}
		})
	})
}
