package kafka

import (
	"fmt"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestSinkExprAttrs writes records whose topic, key and headers are set
// per record (Record.Attrs, in the order of Config.Exprs), under both
// guarantees, and reads them back.
func TestSinkExprAttrs(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	a, b := uniq("attrs-a"), uniq("attrs-b")
	newTopic(t, brokers, a, 1)
	newTopic(t, brokers, b, 1)
	for _, d := range []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.ExactlyOnce} {
		cfg := config("out", brokers, nil)
		cfg.Delivery = d
		cfg.Exprs = []string{"headers", "topic", "key"}
		snk, err := SinkSpec.NewSink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := snk.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		recs := records(4, string(d))
		for i := range recs {
			recs[i].Headers = []stdlib.Header{{Key: "from", Value: []byte("source")}, {Key: "kept", Value: []byte("yes")}}
			recs[i].Attrs = []any{map[string]any{"from": "pipe", "n": int64(i)}, []string{a, b}[i%2], fmt.Sprintf("k%d", i)}
		}
		if err := snk.Write(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
		if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
			t.Fatal(err)
		}
		closeAll(t, snk)
	}
	for i, topic := range []string{a, b} {
		src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
		got := append(readN(t, src, 4), readFor(t, src, 200*time.Millisecond)...)
		closeAll(t, src)
		if len(got) != 4 {
			t.Fatalf("topic %s has %d records, want 4", topic, len(got))
		}
		for _, r := range got {
			n := i + 2*(int(r.Pos.Offset)%2)
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if r.Key != fmt.Sprintf("k%d", n) || len(h) != 3 || h["from"] != "pipe" || h["kept"] != "yes" || h["n"] != fmt.Sprint(n) {
				t.Errorf("topic %s offset %d: key %v headers %v", topic, r.Pos.Offset, r.Key, h)
			}
		}
	}
}
