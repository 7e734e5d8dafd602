package nats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the JetStream source and sink.
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t)) }

// TestServerRestartNATSContract restarts nats-server while a source reads
// and an exactly-once sink writes (stdlibtest.Reconnect); PIPE_KILLTEST=1
// runs it.
func TestServerRestartNATSContract(t *testing.T) {
	if serverPID(t) == 0 {
		t.Skip("no local nats-server process to restart")
	}
	stdlibtest.Reconnect(t, contract(t))
}

// contract describes the connector to the suite: each target a stream of
// its own subjects, read by a durable consumer and written on one subject;
// the sink's positions in a bucket of the test's. The sink drops replays
// by message id rather than committing with its positions (Replays).
func contract(t *testing.T) stdlibtest.Connector {
	e := newNATS(t)
	bucket := name("contract_offsets")
	t.Cleanup(func() { e.js.DeleteKeyValue(context.Background(), bucket) })
	return stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			sn := name("contract")
			e.stream(t, sn, sn)
			return &stdlibtest.Target{
				Source: map[string]any{"url": testURL(), "stream": sn, "consumer": "c", "batch": int64(10)},
				Sink:   map[string]any{"url": testURL(), "stream": sn, "subject": sn + ".out", "offsets_bucket": bucket},
				Produce: func(t *testing.T, ids []int64) {
					for _, id := range ids {
						if _, err := e.js.PublishAsync(sn+".in", fmt.Appendf(nil, `{"id":%d,"name":"n%d"}`, id, id)); err != nil {
							t.Fatal(err)
						}
					}
					select {
					case <-e.js.PublishAsyncComplete():
					case <-time.After(30 * time.Second):
						t.Fatal("publishes not acknowledged")
					}
				},
				Written: func(t *testing.T) []int64 { return e.ids(t, sn) },
			}
		},
		Replays: true,
		// A value that cannot be encoded as JSON.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": make(chan int)}, Partition: -1, Pos: pos}
		},
		Restart: restartServer,
		// No server answers there: the password is never accepted.
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			attrs := map[string]any{"url": "nats://127.0.0.1:1", "user": "bob", "password": secret, "retry_timeout": time.Second}
			src := map[string]any{"stream": "none", "consumer": "c"}
			snk := map[string]any{"subject": "none"}
			for k, v := range attrs {
				src[k], snk[k] = v, v
			}
			return src, snk
		},
	}
}
