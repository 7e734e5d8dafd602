package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the Kafka source and sink.
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t)) }

// TestServerRestartContract restarts the broker while a source reads and
// an exactly-once sink writes (stdlibtest.Reconnect); PIPE_KILLTEST=1 runs
// it.
func TestServerRestartContract(t *testing.T) { stdlibtest.Reconnect(t, contract(t)) }

// contract describes the connector to the suite: each target a topic of 2
// partitions on an embedded broker that keeps its data in a directory, so
// that Restart starts it again at the same address.
func contract(t *testing.T) stdlibtest.Connector {
	_, port := freeAddr(t)
	dir := t.TempDir()
	b := startAt(t, port, dir)
	brokers := b.Addr()
	return stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			topic := uniq("contract")
			newTopic(t, brokers, topic, 2)
			attrs := map[string]any{"brokers": []any{brokers}, "topic": topic}
			return &stdlibtest.Target{
				Source: attrs, Sink: attrs,
				Produce: func(t *testing.T, ids []int64) {
					vals := make([]string, len(ids))
					for i, id := range ids {
						vals[i] = fmt.Sprintf(`{"id":%d,"name":"n%d"}`, id, id)
					}
					produce(t, brokers, topic, vals...)
				},
				Written: func(t *testing.T) []int64 {
					src := openSource(t, config("check", brokers, map[string]any{"topic": topic}), nil)
					defer closeAll(t, src)
					// Until nothing came for 2 s at first, 300 ms once
					// records arrive.
					var ids []int64
					for wait := 2 * time.Second; ; wait = 300 * time.Millisecond {
						ctx, cancel := context.WithTimeout(t.Context(), wait)
						recs, err := src.Read(ctx)
						cancel()
						if err != nil && ctx.Err() == nil {
							t.Fatalf("read %s: %v", topic, err)
						}
						if len(recs) == 0 && ctx.Err() != nil {
							return ids
						}
						for _, r := range recs {
							ids = append(ids, stdlibtest.ID(t, r))
						}
					}
				},
			}
		},
		// A key that cannot be encoded.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Key: make(chan int), Value: map[string]any{"id": int64(-1)}, Partition: -1, Pos: pos}
		},
		Restart: func(t *testing.T) {
			b.Close()
			time.Sleep(2 * time.Second)
			b = startAt(t, port, dir)
		},
		// A broker that refuses the password.
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			sasl := testBroker(t, devbroker.Options{SASL: []devbroker.User{{Mechanism: devbroker.ScramSHA256, Name: "bob", Password: "s3cret"}}})
			attrs := map[string]any{"brokers": []any{sasl}, "topic": "secret", "retry_timeout": time.Second,
				"sasl": map[string]any{"mechanism": stdlib.Ident("scram_sha_256"), "username": "bob", "password": secret}}
			return attrs, attrs
		},
	}
}
