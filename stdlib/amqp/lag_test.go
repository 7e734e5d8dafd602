package amqp

import (
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// TestSourceLag: the lag is the messages ready in the queue, those the
// broker has not handed to the consumer (prefetch bounds what it holds);
// after Close the source answers its last figure.
func TestSourceLag(t *testing.T) {
	e := newRMQ(t)
	q := e.queue("q")
	e.publish(q, 0, 50)
	s := openSource(t, sourceConfig(t, map[string]any{"queue": q, "prefetch": int64(20), "max_wait": 300 * time.Millisecond}))
	want := func(behind int64) {
		t.Helper()
		lag := s.Lag(t.Context())
		if len(lag) != 1 || lag[0] != (stdlib.Lag{Partition: q, Behind: behind, Unit: "records"}) {
			t.Fatalf("lag %+v, want %d records behind on %s", lag, behind, q)
		}
	}
	readN(t, s, 20, 10*time.Second)
	want(30)
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "src", Partition: q, Offset: 20}}); err != nil {
		t.Fatal(err)
	}
	readN(t, s, 20, 10*time.Second)
	want(10)
	s.Close(t.Context())
	e.publish(q, 50, 60)
	want(10)
}
