package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pipe.dev/pipe/stdlib"
)

// The benchmarks run the source and the sink beside a plain nats.go loop
// doing the same job against the same server: read b.N messages of a
// stream through a durable pull consumer, acknowledging them; publish
// b.N messages with message ids to JetStream, awaiting every
// acknowledgement. Figures: bench/RESULTS-nats.md.

const benchBody = `{"id":12345,"user":"u42","amount":73.5,"country":"NL","event":"purchase"}`

func benchStream(b *testing.B, e *natsEnv, n int) string {
	sn := name("bench")
	e.stream(b, sn, sn)
	js, _ := jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
	for i := 0; i < n; i++ {
		if _, err := js.PublishAsync(sn+".e", []byte(benchBody)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged")
	}
	return sn
}

func BenchmarkSource(b *testing.B) {
	e := newNATS(b)
	sn := benchStream(b, e, b.N)
	src, err := newSource(config(b, SourceSpec, "in", map[string]any{"url": testURL(), "stream": sn, "consumer": "bench"}))
	if err != nil {
		b.Fatal(err)
	}
	if err := src.Open(b.Context(), nil); err != nil {
		b.Fatal(err)
	}
	defer src.Close(context.Background())
	b.ResetTimer()
	start := time.Now()
	got := 0
	for got < b.N {
		recs, err := src.Read(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		// Acknowledged as checkpoints would: every 10,000 records.
		if len(recs) > 0 && (got+len(recs))/10000 != got/10000 || got+len(recs) >= b.N {
			if err := src.Commit(b.Context(), []stdlib.Position{recs[len(recs)-1].Pos}); err != nil {
				b.Fatal(err)
			}
		}
		got += len(recs)
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkSourcePlain is the same read with nats.go alone: Fetch from a
// durable AckAll pull consumer, decoding each message with encoding/json
// and acknowledging each batch's last message.
func BenchmarkSourcePlain(b *testing.B) {
	e := newNATS(b)
	sn := benchStream(b, e, b.N)
	c, err := e.js.CreateConsumer(b.Context(), sn, jetstream.ConsumerConfig{Durable: "plain", AckPolicy: jetstream.AckAllPolicy, MaxAckPending: 1000000})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	got := 0
	for got < b.N {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(250*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		var last jetstream.Msg
		for m := range batch.Messages() {
			if _, err := m.Metadata(); err != nil {
				b.Fatal(err)
			}
			var v map[string]any
			if err := json.Unmarshal(m.Data(), &v); err != nil {
				b.Fatal(err)
			}
			last = m
			got++
		}
		if last != nil {
			if err := last.DoubleAck(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkSink(b *testing.B) {
	e := newNATS(b)
	sn := name("benchsink")
	e.stream(b, sn, sn)
	s, err := newSink(config(b, SinkSpec, "out", map[string]any{"url": testURL(), "stream": sn, "subject": sn + ".e"}))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Open(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	const batch = 1024
	recs := make([]stdlib.Record, batch)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for k := range n {
			recs[k] = stdlib.Record{Value: map[string]any{"id": int64(i + k), "user": "u42", "amount": 73.5, "country": "NL", "event": "purchase"},
				Pos: stdlib.Position{Source: "in", Partition: "p", Offset: int64(i + k)}}
		}
		if err := s.Write(b.Context(), recs[:n]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Checkpoint(b.Context(), stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "in", Partition: "p", Offset: int64(b.N)}}}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkSinkPlain is the same publish with nats.go alone: async
// publishes with a message id, every acknowledgement awaited.
func BenchmarkSinkPlain(b *testing.B) {
	e := newNATS(b)
	sn := name("benchsink")
	e.stream(b, sn, sn)
	nc, err := nats.Connect(testURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		m := &nats.Msg{Subject: sn + ".e", Data: fmt.Appendf(nil, `{"id":%d,"user":"u42","amount":73.5,"country":"NL","event":"purchase"}`, i)}
		if _, err := js.PublishMsgAsync(m, jetstream.WithMsgID("in/p@"+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
