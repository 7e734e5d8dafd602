package kafka

import (
	"fmt"
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestSourceLag: the lag a source reports is the high watermark of its
// last fetch minus the next offset, per partition, and reaches 0 once
// everything is read.
func TestSourceLag(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("lag")
	newTopic(t, brokers, topic, 1)
	for i := range 5 { // five batches: a small fetch returns one
		produce(t, brokers, topic, fmt.Sprintf(`{"n":%d}`, i))
	}
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic, "fetch_max_bytes": int64(1)}), nil)
	defer closeAll(t, src)
	l := src.(stdlib.Lagger)
	if got := l.Lag(t.Context()); len(got) != 0 {
		t.Fatalf("lag before the first fetch: %v", got)
	}
	first := readN(t, src, 1)
	t.Logf("the first fetch read %d records", len(first))
	want := []stdlib.Lag{{Partition: topic + "/0", Behind: int64(5 - len(first)), Unit: "records"}}
	if got := l.Lag(t.Context()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lag after reading %d of 5: %v, want %v", len(first), got, want)
	}
	readN(t, src, 5-len(first))
	want[0].Behind = 0
	if got := l.Lag(t.Context()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lag after reading everything: %v, want %v", got, want)
	}
}
