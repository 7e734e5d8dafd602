package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// plainLoopEnv makes the test binary run plainLoop instead of the tests:
// BenchmarkPipeline starts the plain consume → produce loop as a child
// process, as it starts `pipe run`.
const plainLoopEnv = "PIPE_BENCH_PLAIN_LOOP"

// plainCodecEnv names how the plain loop decodes and encodes: "json"
// (encoding/json into map[string]any) or "codec" (the json codec of
// package codec with the example's schema, as the pipeline does).
const plainCodecEnv = "PIPE_BENCH_PLAIN_CODEC"

func TestMain(m *testing.M) {
	if os.Getenv(plainLoopEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		transform, err := plainTransform(os.Getenv(plainCodecEnv))
		if err == nil {
			err = plainLoop(ctx, os.Getenv("KAFKA_BROKERS"), os.Getenv("IN_TOPIC"), os.Getenv("OUT_TOPIC"), os.Getenv("GROUP"), transform)
		}
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "plain loop:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkPipeline measures, in one run and on one embedded broker per
// case, with the same b.N JSON records of the example's shape waiting in
// a 4-partition input topic:
//
//   - plain_produce: kafka-go's asynchronous Writer (acks=all) writing them;
//   - plain_consume: a kafka-go group Reader reading them, group join included;
//   - plain_loop_json, plain_loop_codec: a child process doing the
//     pipeline's job with plain kafka-go (plainLoop): group-consume, keep
//     amount > 50, rename user to customer, add region, produce (acks=all,
//     same partition) and commit the consumed offsets every second once the
//     output is acknowledged; decoding and encoding with encoding/json or
//     with package codec and the example's schema;
//   - at_least_once, exactly_once: examples/kafka_to_kafka.pipe under
//     `pipe run` (built from this tree) with that delivery.
//
// For the last four the time runs from the start of the child process
// until a read_committed consumer has read every expected output record,
// so it includes the process start, the group join and (for the pipeline)
// the last checkpoint. exactly_once output shows only when a checkpoint
// commits it, so its time is rounded up to a checkpoint (1 s apart):
// steady-records/s, the input rate while 10% to 90% of the output reached
// the output log (read uncommitted), leaves the start and that wait out.
// Set PIPE_BENCH_PIPELINE=1 to run it:
//
//	PIPE_BENCH_PIPELINE=1 go test -run '^$' -bench Pipeline -benchtime 500000x ./stdlib/kafka/
func BenchmarkPipeline(b *testing.B) {
	if os.Getenv("PIPE_BENCH_PIPELINE") != "1" {
		b.Skip("set PIPE_BENCH_PIPELINE=1 to run the pipeline benchmark")
	}
	root := proctest.ModuleRoot(b)
	b.Chdir(root)
	dir := b.TempDir()
	bin := proctest.BuildPipe(b)
	src, err := os.ReadFile(filepath.Join(root, "examples", "kafka_to_kafka.pipe"))
	if err != nil {
		b.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}

	b.Run("plain_produce", func(b *testing.B) {
		brokers := testBroker(b, devbroker.Options{})
		in := uniq("bench-in")
		newTopic(b, brokers, in, 4)
		msgs := eventMessages(b.N)
		b.ResetTimer()
		start := time.Now()
		var failed atomic.Int64
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: in, Transport: tr, RequiredAcks: kafka.RequireAll,
			BatchSize: 10000, BatchBytes: 1 << 20, BatchTimeout: 5 * time.Millisecond, Balancer: &kafka.RoundRobin{},
			Async: true, Completion: func(msgs []kafka.Message, err error) {
				if err != nil {
					failed.Add(int64(len(msgs)))
				}
			}}
		for done := 0; done < b.N; done += benchBatch {
			if err := w.WriteMessages(context.Background(), msgs[done:min(done+benchBatch, b.N)]...); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil { // flushes
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d records failed", n)
		}
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	})

	b.Run("plain_consume", func(b *testing.B) {
		brokers := testBroker(b, devbroker.Options{})
		in := uniq("bench-in")
		newTopic(b, brokers, in, 4)
		if err := proctest.ProduceEvents(context.Background(), nil, brokers, in, 0, b.N, 0); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{brokers}, GroupID: uniq("g"), Topic: in, StartOffset: kafka.FirstOffset,
			CommitInterval: time.Second, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond,
			Dialer: &kafka.Dialer{Timeout: 10 * time.Second},
		})
		defer r.Close()
		for range b.N {
			if _, err := r.ReadMessage(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	})

	// child runs cmd against fresh input and output topics holding b.N
	// input records and measures until every expected output arrived.
	child := func(b *testing.B, name string, cmd func(brokers, in, out string) *osexec.Cmd) {
		brokers := testBroker(b, devbroker.Options{})
		in, out := uniq("bench-in"), uniq("bench-out")
		newTopic(b, brokers, in, 4)
		newTopic(b, brokers, out, 4)
		want := proctest.KeptEvents(b.N)
		if err := proctest.ProduceEvents(context.Background(), nil, brokers, in, 0, b.N, 0); err != nil {
			b.Fatal(err)
		}
		c := cmd(brokers, in, out)
		c.Env = append(append(os.Environ(), c.Env...), "KAFKA_BROKERS="+brokers, "IN_TOPIC="+in, "OUT_TOPIC="+out, "GROUP="+uniq("bench"))
		c.Stderr = &proctest.LogWriter{T: b, Prefix: name + ": "}
		b.ResetTimer()
		start := time.Now()
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		// The output log's end, polled: when 10% and 90% of the expected
		// output were produced (read_uncommitted: for exactly_once, before
		// the checkpoints commit them), for the pace in between.
		marks := make(chan [2]time.Duration, 1)
		go func() { marks <- produceMarks(brokers, out, len(want), start) }()
		got := readOutputN(b, brokers, out, len(want), 5*time.Minute)
		elapsed := time.Since(start)
		m := <-marks
		b.StopTimer()
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
		if got < len(want) {
			b.Fatalf("read %d of %d output records", got, len(want))
		}
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
		if m[0] > 0 && m[1] > m[0] {
			// Input records per second while 10% to 90% of the output was
			// produced: the pace of the run, without its start and the
			// wait for its last checkpoint.
			b.ReportMetric(0.8*float64(b.N)/(m[1]-m[0]).Seconds(), "steady-records/s")
		}
		// The child's CPU time (until it stopped) per input record: less
		// bent by other load on the machine than the rate.
		cpu := c.ProcessState.UserTime() + c.ProcessState.SystemTime()
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "child-cpu-ns/record")
	}

	for _, mode := range []string{"json", "codec"} {
		name := "plain_loop_" + mode
		b.Run(name, func(b *testing.B) {
			child(b, name, func(_, _, _ string) *osexec.Cmd {
				c := osexec.Command(self, "-test.run", "^$")
				c.Env = []string{plainLoopEnv + "=1", plainCodecEnv + "=" + mode}
				return c
			})
		})
	}

	for _, delivery := range []string{"at_least_once", "exactly_once"} {
		b.Run(delivery, func(b *testing.B) {
			file := filepath.Join(dir, delivery+".pipe")
			if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(src), "exactly_once", delivery)), 0o644); err != nil {
				b.Fatal(err)
			}
			child(b, delivery, func(_, _, _ string) *osexec.Cmd {
				return osexec.Command(bin, "run", "-q", "--state-dir", filepath.Join(dir, "state-"+delivery), file)
			})
		})
	}
}

// produceMarks polls the end of topic's log (4 partitions) until it holds
// 90% of want records or a minute passed, and returns how long after start
// it held 10% and 90% of them (0: not reached).
func produceMarks(brokers, topic string, want int, start time.Time) (m [2]time.Duration) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr}
	reqs := []kafka.OffsetRequest{kafka.LastOffsetOf(0), kafka.LastOffsetOf(1), kafka.LastOffsetOf(2), kafka.LastOffsetOf(3)}
	for time.Since(start) < time.Minute {
		res, err := cl.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
		if err == nil {
			var sum int64
			for _, po := range res.Topics[topic] {
				sum += po.LastOffset
			}
			if m[0] == 0 && sum >= int64(want)/10 {
				m[0] = time.Since(start)
			}
			if sum >= int64(want)*9/10 {
				m[1] = time.Since(start)
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return m
}

// eventMessages returns n messages of produceEvents' shape.
func eventMessages(n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: []byte(proctest.Event(i))}
	}
	return msgs
}

// samePartition writes a message to the partition it was read from,
// carried in WriterData.
type samePartition struct{}

func (samePartition) Balance(msg kafka.Message, partitions ...int) int {
	p := msg.WriterData.(int)
	return partitions[p%len(partitions)]
}

// plainLoop is the pipeline's job written with kafka-go and encoding/json
// alone: consume topic in with group, keep events with amount > 50, rename
// user to customer, add region "EU", produce to topic out on the source
// partition with acks=all, and every second, once every produced message is
// acknowledged, commit the consumed offsets. It runs until ctx ends.
func plainLoop(ctx context.Context, brokers, in, out, group string, transform func(dst, msg []byte) ([]byte, bool, error)) error {
	if brokers == "" || in == "" || out == "" || group == "" {
		return errors.New("KAFKA_BROKERS, IN_TOPIC, OUT_TOPIC and GROUP must be set")
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{brokers}, GroupID: group, Topic: in, StartOffset: kafka.FirstOffset,
		MaxBytes: 1 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 10000,
		Dialer: &kafka.Dialer{Timeout: 10 * time.Second},
	})
	defer r.Close()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		pending int
		werr    error
	)
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: out, Transport: tr, RequiredAcks: kafka.RequireAll,
		BatchSize: 10000, BatchBytes: 1 << 20, BatchTimeout: 5 * time.Millisecond, Balancer: samePartition{},
		Async: true, Completion: func(msgs []kafka.Message, err error) {
			mu.Lock()
			pending -= len(msgs)
			if err != nil && werr == nil {
				werr = err
			}
			cond.Broadcast()
			mu.Unlock()
		}}
	defer w.Close()

	// A goroutine fetches into a channel so that the loop below can take
	// every message already fetched as one batch.
	fetched := make(chan kafka.Message, 10000)
	ferr := make(chan error, 1)
	go func() {
		defer close(fetched)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				ferr <- err
				return
			}
			fetched <- m
		}
	}()

	last := map[int]kafka.Message{} // last consumed message by partition
	commit := func() error {
		mu.Lock()
		for pending > 0 && werr == nil {
			cond.Wait()
		}
		err := werr
		mu.Unlock()
		if err != nil {
			return fmt.Errorf("produce: %w", err)
		}
		if len(last) == 0 {
			return nil
		}
		msgs := make([]kafka.Message, 0, len(last))
		for _, m := range last {
			msgs = append(msgs, m)
		}
		clear(last)
		return r.CommitMessages(ctx, msgs...)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	batch := make([]kafka.Message, 0, benchBatch)
	for {
		select {
		case <-tick.C:
			if err := commit(); err != nil {
				return err
			}
			continue
		case m, ok := <-fetched:
			if !ok {
				if err := <-ferr; ctx.Err() == nil {
					return err
				}
				return nil
			}
			batch = append(batch[:0], m)
		}
		// Gather what arrives within a millisecond, up to a full batch:
		// the Writer's cost is per call as much as per message.
		linger := time.NewTimer(time.Millisecond)
	more:
		for len(batch) < cap(batch) {
			select {
			case m, ok := <-fetched:
				if !ok {
					break more
				}
				batch = append(batch, m)
			case <-linger.C:
				break more
			}
		}
		linger.Stop()
		msgs := make([]kafka.Message, 0, len(batch))
		buf := make([]byte, 0, 128*len(batch)) // the batch's encoded values
		for _, m := range batch {
			last[m.Partition] = m
			start := len(buf)
			var (
				keep bool
				err  error
			)
			buf, keep, err = transform(buf, m.Value)
			if err != nil {
				return fmt.Errorf("offset %d: %w", m.Offset, err)
			}
			if !keep {
				continue
			}
			v := buf[start:len(buf):len(buf)]
			msgs = append(msgs, kafka.Message{Key: m.Key, Value: v, WriterData: m.Partition})
		}
		if len(msgs) == 0 {
			continue
		}
		mu.Lock()
		pending += len(msgs)
		mu.Unlock()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("produce: %w", err)
		}
	}
}

// plainTransform returns the example's transform (keep amount > 50,
// rename user to customer, add region "EU") over JSON messages, decoded
// and encoded as mode says.
// The encoding is appended to dst.
func plainTransform(mode string) (func(dst, msg []byte) ([]byte, bool, error), error) {
	shape := func(ev map[string]any) bool {
		switch a := ev["amount"].(type) {
		case float64:
			if a <= 50 {
				return false
			}
		default:
			return false
		}
		ev["customer"] = ev["user"]
		delete(ev, "user")
		ev["region"] = "EU"
		return true
	}
	switch mode {
	case "json":
		return func(dst, b []byte) ([]byte, bool, error) {
			var ev map[string]any
			if err := json.Unmarshal(b, &ev); err != nil {
				return dst, false, err
			}
			if !shape(ev) {
				return dst, false, nil
			}
			v, err := json.Marshal(ev)
			return append(dst, v...), true, err
		}, nil
	case "codec":
		dec, err := codec.New("json", stdlibtest.EventType, codec.Options{})
		if err != nil {
			return nil, err
		}
		enc, err := codec.New("json", nil, codec.Options{})
		if err != nil {
			return nil, err
		}
		return func(dst, b []byte) ([]byte, bool, error) {
			ev, err := dec.Decode(b)
			if err != nil {
				return dst, false, err
			}
			if !shape(ev) {
				return dst, false, nil
			}
			dst, err = enc.Append(dst, ev)
			return dst, true, err
		}, nil
	}
	return nil, fmt.Errorf("unknown %s %q", plainCodecEnv, mode)
}

// readOutputN reads topic read_committed until want records arrived.
func readOutputN(b testing.TB, brokers, topic string, want int, timeout time.Duration) int {
	src := openSource(b, config("check", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("bytes")}), nil)
	defer closeAll(b, src)
	deadline := time.Now().Add(timeout)
	got := 0
	for got < want && time.Now().Before(deadline) {
		recs, err := src.Read(b.(interface{ Context() context.Context }).Context())
		if err != nil {
			b.Fatalf("read output: %v", err)
		}
		got += len(recs)
	}
	return got
}
