package amqp

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/stdlib"
)

// Benchmarks of the source and sink beside plain amqp091-go loops doing
// the same job against the same server, in the same run (figures in
// bench/RESULTS-amqp.md):
//
//	go test -run '^$' -bench . -benchtime 100000x ./stdlib/amqp/
//
// Messages are JSON objects of about 100 bytes, persistent, on a durable
// classic queue.

const benchBatch = 1000 // records per Write; messages per ack or confirm wait

func benchBody(n int) []byte {
	return fmt.Appendf(nil, `{"id":%d,"user":"u%04d","amount":%d.25,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:00Z"}`, n, n%9973, n%500)
}

func benchValue(n int) map[string]any {
	return map[string]any{"id": int64(n), "user": fmt.Sprintf("u%04d", n%9973), "amount": float64(n%500) + 0.25,
		"country": "NL", "event": "purchase", "ts": "2024-01-01T00:00:00Z"}
}

// fill publishes n messages to q, confirmed, outside the timer.
func fill(b *testing.B, e *rmq, q string, n int) {
	b.Helper()
	ch, err := e.cn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += benchBatch {
		publishBatch(b, ch, q, i, min(i+benchBatch, n))
	}
}

// publishBatch publishes messages from..to-1 to q, persistent and
// mandatory, and waits for every confirm.
func publishBatch(b *testing.B, ch *amqp.Channel, q string, from, to int) {
	var dcs []*amqp.DeferredConfirmation
	for j := from; j < to; j++ {
		dc, err := ch.PublishWithDeferredConfirm("", q, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: fmt.Sprint(j), Body: benchBody(j)})
		if err != nil {
			b.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for _, dc := range dcs {
		if !dc.Wait() {
			b.Fatal("not confirmed")
		}
	}
}

// BenchmarkPlainPublish publishes with amqp091-go: batches of 1,000
// persistent messages, mandatory, every confirm awaited before the next
// batch (what the sink does with mandatory).
func BenchmarkPlainPublish(b *testing.B) {
	e := newRMQ(b)
	q := e.queue("q")
	ch, err := e.cn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += benchBatch {
		publishBatch(b, ch, q, i, min(i+benchBatch, b.N))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if n := e.count(q); n != b.N {
		b.Fatalf("queue holds %d, want %d", n, b.N)
	}
}

// BenchmarkSink writes records in batches of 1,000 with a checkpoint every
// 10,000: mandatory (each Write awaits its confirms) and not (the
// checkpoint does).
func BenchmarkSink(b *testing.B) {
	for _, mandatory := range []bool{true, false} {
		b.Run(fmt.Sprintf("mandatory=%v", mandatory), func(b *testing.B) {
			e := newRMQ(b)
			q := e.queue("q")
			s := openSink(b, sinkConfig(b, map[string]any{"routing_key": q, "mandatory": mandatory}))
			recs := make([]stdlib.Record, benchBatch)
			b.ResetTimer()
			for i := 0; i < b.N; i += benchBatch {
				n := min(benchBatch, b.N-i)
				b.StopTimer()
				for j := range n {
					recs[j] = stdlib.Record{Value: benchValue(i + j), Pos: stdlib.Position{Source: "in", Partition: "p", Offset: int64(i + j)}}
				}
				b.StartTimer()
				if err := s.Write(b.Context(), recs[:n]); err != nil {
					b.Fatal(err)
				}
				if (i+n)%10000 == 0 || i+n == b.N {
					if err := s.Checkpoint(b.Context(), stdlib.Checkpoint{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if n := e.count(q); n != b.N {
				b.Fatalf("queue holds %d, want %d", n, b.N)
			}
		})
	}
}

// BenchmarkPlainConsume consumes with amqp091-go: prefetch 2,000, manual
// acknowledgements (one multiple ack per 1,000 messages), each body
// decoded as JSON as the source does.
func BenchmarkPlainConsume(b *testing.B) {
	e := newRMQ(b)
	q := e.queue("q")
	fill(b, e, q, b.N)
	ch, err := e.cn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Qos(2000, 0, false); err != nil {
		b.Fatal(err)
	}
	s, _ := newSource(sourceConfig(b, map[string]any{"queue": q}))
	b.ResetTimer()
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		d := <-ds
		if _, err := s.val.Decode(d.Body); err != nil {
			b.Fatal(err)
		}
		if (i+1)%benchBatch == 0 || i+1 == b.N {
			if err := d.Ack(true); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSource reads with the source, committing every 1,000 records
// (as completed checkpoints would).
func BenchmarkSource(b *testing.B) {
	e := newRMQ(b)
	q := e.queue("q")
	fill(b, e, q, b.N)
	b.ResetTimer()
	s := openSource(b, sourceConfig(b, map[string]any{"queue": q, "prefetch": int64(2000), "max_wait": 5 * time.Second}))
	got, committed := 0, 0
	for got < b.N {
		recs, err := s.Read(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		got += len(recs)
		if got-committed >= benchBatch || got == b.N {
			if err := s.Commit(b.Context(), []stdlib.Position{{Source: "src", Partition: q, Offset: int64(got)}}); err != nil {
				b.Fatal(err)
			}
			committed = got
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
