package proctest

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// Event returns input event i of the Kafka examples
// (examples/kafka_to_*.pipe) as JSON.
func Event(i int) string {
	return fmt.Sprintf(`{"id":%d,"user":"u%d","amount":%.2f,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:%02dZ"}`,
		i, i%100, EventAmount(i), i%60)
}

// EventAmount returns the amount of event i: the examples keep the events
// over 50, about half.
func EventAmount(i int) float64 { return float64((i*7919)%10000) / 100 }

// KeptEvents returns the ids of the events 0 to n-1 the examples keep.
func KeptEvents(n int) map[int64]bool {
	want := map[int64]bool{}
	for i := range n {
		if EventAmount(i) > 50 {
			want[int64(i)] = true
		}
	}
	return want
}

// ProduceEvents writes events from to to-1 to topic, in chunks spread
// over span. With up set (a [Broker]'s Up), each chunk is written inside
// it, so that none overlaps a broker outage; every chunk has a writer of
// its own, as one that outlived a broker restart would fail on its dead
// connections.
func ProduceEvents(ctx context.Context, up func(func() error) error, brokers, topic string, from, to int, span time.Duration) error {
	write := func(msgs []kafka.Message) error {
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireAll,
			BatchSize: 1000, BatchTimeout: 5 * time.Millisecond, Balancer: &kafka.RoundRobin{}}
		defer w.Close()
		if up == nil {
			return w.WriteMessages(ctx, msgs...)
		}
		return up(func() error { return w.WriteMessages(ctx, msgs...) })
	}
	const chunk = 500
	start := time.Now()
	msgs := make([]kafka.Message, 0, chunk)
	for i := from; i < to; i++ {
		msgs = append(msgs, kafka.Message{Value: []byte(Event(i))})
		if len(msgs) == cap(msgs) || i == to-1 {
			if err := write(msgs); err != nil {
				return fmt.Errorf("produce input: %w", err)
			}
			msgs = msgs[:0]
			if due := start.Add(span * time.Duration(i+1-from) / time.Duration(to-from)); time.Until(due) > 0 {
				time.Sleep(time.Until(due))
			}
		}
	}
	return nil
}

// Tally counts the ids of want not in ids, those in ids more than once,
// and the ids not in want.
func Tally(want map[int64]bool, ids []int64) (missing, doubled, extra int) {
	seen := map[int64]int{}
	for _, id := range ids {
		seen[id]++
	}
	for id := range want {
		switch c := seen[id]; {
		case c == 0:
			missing++
		case c > 1:
			doubled++
		}
	}
	for id := range seen {
		if !want[id] {
			extra++
		}
	}
	return missing, doubled, extra
}

// OutagesDuring writes events 0 to n-1 to topic in one round per signal
// (each spread over 8 s), and 3 s into each round takes the broker down
// with that signal for down, then starts it again. After each round it
// calls check with the number of events written so far.
func (b *Broker) OutagesDuring(topic string, n int, down time.Duration, check func(written int), sigs ...syscall.Signal) {
	b.t.Helper()
	per := n / len(sigs)
	for i, sig := range sigs {
		from, to := i*per, (i+1)*per
		produced := make(chan error, 1)
		go func() {
			produced <- ProduceEvents(context.Background(), b.Up, b.Addr, topic, from, to, 8*time.Second)
		}()
		time.Sleep(3 * time.Second)
		start := time.Now()
		b.Outage(sig, down)
		b.t.Logf("broker down (%v) and up again after %v", sig, time.Since(start).Round(time.Millisecond))
		if err := <-produced; err != nil {
			b.t.Fatal(err)
		}
		check(to)
	}
}
