package kafka

import (
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// BenchmarkPipeline runs examples/kafka_to_kafka.pipe under `pipe run`
// (built from this tree) against an embedded broker: b.N JSON records are
// waiting in the input topic; the time runs from the start of `pipe run`
// until a read_committed consumer has read every expected output record,
// so it includes the process start, the group join and the last checkpoint.
// Set PIPE_BENCH_PIPELINE=1 to run it:
//
//	PIPE_BENCH_PIPELINE=1 go test -run '^$' -bench Pipeline -benchtime 500000x ./stdlib/kafka/
func BenchmarkPipeline(b *testing.B) {
	if os.Getenv("PIPE_BENCH_PIPELINE") != "1" {
		b.Skip("set PIPE_BENCH_PIPELINE=1 to run the pipeline benchmark")
	}
	root := moduleRoot(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "pipe")
	if out, err := osexec.Command("go", "build", "-o", bin, "./cmd/pipe").CombinedOutput(); err != nil {
		b.Fatalf("build pipe: %v\n%s", err, out)
	}
	src, err := os.ReadFile(filepath.Join(root, "examples", "kafka_to_kafka.pipe"))
	if err != nil {
		b.Fatal(err)
	}
	for _, delivery := range []string{"at_least_once", "exactly_once"} {
		b.Run(delivery, func(b *testing.B) {
			brokers := testBroker(b, devbroker.Options{})
			in, out := uniq("bench-in"), uniq("bench-out")
			newTopic(b, brokers, in, 4)
			newTopic(b, brokers, out, 4)
			file := filepath.Join(dir, delivery+".pipe")
			if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(src), "exactly_once", delivery)), 0o644); err != nil {
				b.Fatal(err)
			}
			want := expectedEvents(b.N)
			if err := produceEvents(brokers, in, b.N, 0); err != nil {
				b.Fatal(err)
			}
			cmd := osexec.Command(bin, "run", "-q", "--state-dir", filepath.Join(dir, "state-"+delivery), file)
			cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+brokers, "IN_TOPIC="+in, "OUT_TOPIC="+out, "GROUP="+uniq("bench"))
			cmd.Stderr = &tailWriter{t: b, prefix: delivery + ": "}
			b.ResetTimer()
			start := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			got := readOutputN(b, brokers, out, len(want), 5*time.Minute)
			elapsed := time.Since(start)
			b.StopTimer()
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			if got < len(want) {
				b.Fatalf("read %d of %d output records", got, len(want))
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
		})
	}
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
