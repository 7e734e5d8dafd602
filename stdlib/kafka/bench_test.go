package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// Benchmarks of plain kafka-go against the embedded broker beside the
// kafka sink and source alone, all with records of about 100 bytes:
//
//	go test -run '^$' -bench . -benchtime 200000x ./stdlib/kafka/

const benchBatch = 1000

func benchValue(i int) string {
	return fmt.Sprintf(`{"id":%d,"user":"u%d","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}`, i, i%100)
}

func benchMessages(n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: []byte(benchValue(i))}
	}
	return msgs
}

func reportRate(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func benchProduce(b *testing.B, brokers, topic string, n int) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireAll,
		BatchSize: benchBatch, BatchBytes: 1 << 20, BatchTimeout: 5 * time.Millisecond, Balancer: &kafka.RoundRobin{}}
	defer w.Close()
	msgs := benchMessages(benchBatch)
	for done := 0; done < n; done += benchBatch {
		if err := w.WriteMessages(context.Background(), msgs[:min(benchBatch, n-done)]...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlainProduce is kafka-go's Writer at its fastest: asynchronous,
// acks=all, batches of up to 10,000 records.
func BenchmarkPlainProduce(b *testing.B) {
	brokers := testBroker(b, devbroker.Options{})
	topic := uniq("bench")
	newTopic(b, brokers, topic, 4)
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	var failed atomic.Int64
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireAll,
		BatchSize: 10000, BatchBytes: 1 << 20, BatchTimeout: 5 * time.Millisecond, Balancer: &kafka.RoundRobin{},
		Async: true, Completion: func(msgs []kafka.Message, err error) {
			if err != nil {
				failed.Add(int64(len(msgs)))
			}
		}}
	msgs := benchMessages(benchBatch)
	b.ResetTimer()
	for done := 0; done < b.N; done += benchBatch {
		if err := w.WriteMessages(context.Background(), msgs[:min(benchBatch, b.N-done)]...); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil { // flushes
		b.Fatal(err)
	}
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d records failed", n)
	}
	reportRate(b, b.N)
}

func BenchmarkPlainConsume(b *testing.B) {
	brokers := testBroker(b, devbroker.Options{})
	topic := uniq("bench")
	newTopic(b, brokers, topic, 4)
	benchProduce(b, brokers, topic, b.N)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{brokers}, GroupID: uniq("g"), Topic: topic, StartOffset: kafka.FirstOffset,
		CommitInterval: time.Second, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond,
		Dialer: &kafka.Dialer{Timeout: 10 * time.Second},
	})
	defer r.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := r.ReadMessage(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N)
}

func benchSink(b *testing.B, delivery stdlib.Delivery) {
	brokers := testBroker(b, devbroker.Options{})
	topic := uniq("bench")
	cfg := config("out", brokers, map[string]any{"topic": topic, "create_topic": map[string]any{"partitions": int64(4)}, "partitioner": stdlib.Ident("round_robin")})
	cfg.Delivery = delivery
	cfg.Pipeline = topic
	snk, err := SinkSpec.NewSink(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := snk.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer snk.Close(context.Background())
	proto := make([]stdlib.Record, benchBatch)
	for i := range proto {
		proto[i] = stdlib.Record{Value: map[string]any{
			"id": int64(i), "user": fmt.Sprintf("u%d", i%100), "amount": 79.19, "country": "NL", "event": "purchase", "ts": "2024-01-01T00:00:01Z",
		}, Partition: -1}
	}
	batch := make([]stdlib.Record, benchBatch)
	var cp uint64
	b.ResetTimer()
	for done := 0; done < b.N; done += benchBatch {
		n := copy(batch, proto[:min(benchBatch, b.N-done)])
		if err := snk.Write(context.Background(), batch[:n]); err != nil {
			b.Fatal(err)
		}
		// A checkpoint every 100,000 records (a second at a few 100k/s).
		if (done+n)%100000 == 0 || done+n >= b.N {
			cp++
			pos := []stdlib.Position{{Source: "in", Partition: "in/0", Offset: int64(done + n)}}
			if err := snk.Checkpoint(context.Background(), stdlib.Checkpoint{ID: cp, Positions: pos}); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportRate(b, b.N)
}

func BenchmarkSinkAtLeastOnce(b *testing.B) { benchSink(b, stdlib.AtLeastOnce) }
func BenchmarkSinkExactlyOnce(b *testing.B) { benchSink(b, stdlib.ExactlyOnce) }

func benchSource(b *testing.B, group bool) {
	brokers := testBroker(b, devbroker.Options{})
	topic := uniq("bench")
	newTopic(b, brokers, topic, 4)
	benchProduce(b, brokers, topic, b.N)
	attrs := map[string]any{"topic": topic}
	if group {
		attrs["group"] = uniq("g")
	}
	src := openSource(b, config("in", brokers, attrs), nil)
	defer src.Close(context.Background())
	b.ResetTimer()
	for got := 0; got < b.N; {
		recs, err := src.Read(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		got += len(recs)
	}
	reportRate(b, b.N)
}

func BenchmarkSource(b *testing.B)      { benchSource(b, false) }
func BenchmarkSourceGroup(b *testing.B) { benchSource(b, true) }
