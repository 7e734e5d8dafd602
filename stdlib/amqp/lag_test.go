package amqp

import (
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
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
		stdlibtest.WantLag(t, s, stdlib.Lag{Partition: q, Behind: behind, Unit: "records"})
	}
	stdlibtest.ReadN(t, s, 20, 10*time.Second)
	want(30)
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "src", Partition: q, Offset: 20}}); err != nil {
		t.Fatal(err)
	}
	stdlibtest.ReadN(t, s, 20, 10*time.Second)
	want(10)
	s.Close(t.Context())
	e.publish(q, 50, 60)
	want(10)
}
