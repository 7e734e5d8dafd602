package kafka

import (
	"fmt"
	"strings"
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestSourceLag: the lag a source reports is the high watermark of its
// last fetch minus the next offset, per partition, and reaches 0 once
// everything is read; the source is caught up (stdlib.CaughtUpper) then,
// not before.
func TestSourceLag(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("lag")
	newTopic(t, brokers, topic, 1)
	pad := strings.Repeat("x", 600)
	for i := range 5 { // five batches of 600 bytes: a fetch of 1 KiB returns one or two
		produce(t, brokers, topic, fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
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
	if cu := src.(stdlib.CaughtUpper).CaughtUp(); cu != (len(first) == 5) {
		t.Fatalf("caught up after reading %d of 5: %v", len(first), cu)
	}
	readN(t, src, 5-len(first))
	want[0].Behind = 0
	if got := l.Lag(t.Context()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lag after reading everything: %v, want %v", got, want)
	}
	if !src.(stdlib.CaughtUpper).CaughtUp() {
		t.Fatal("not caught up after reading everything")
	}
}
