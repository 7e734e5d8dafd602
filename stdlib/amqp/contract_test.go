package amqp

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the queue source and the
// publishing sink, both at least once: the broker keeps what the source
// did not acknowledge (Acks).
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t)) }

// TestServerRestartRabbitMQContract restarts the local RabbitMQ while a
// source reads and a sink publishes (stdlibtest.Reconnect); PIPE_KILLTEST=1
// runs it.
func TestServerRestartRabbitMQContract(t *testing.T) { stdlibtest.Reconnect(t, contract(t)) }

// contract describes the connector to the suite: each target a durable
// queue the source consumes and another the sink publishes to (through
// the default exchange).
func contract(t *testing.T) stdlibtest.Connector {
	e := newRMQ(t)
	n := 0
	return stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Acks:   true,
		Target: func(t *testing.T) *stdlibtest.Target {
			n++
			in, out := e.queue(fmt.Sprintf("c%d-in", n)), e.queue(fmt.Sprintf("c%d-out", n))
			return &stdlibtest.Target{
				Source: map[string]any{"url": testURL(), "queue": in, "batch": int64(10), "retry_timeout": time.Minute},
				Sink:   map[string]any{"url": testURL(), "routing_key": out, "retry_timeout": time.Minute},
				Produce: func(t *testing.T, ids []int64) {
					ms := make([]amqp.Publishing, len(ids))
					for i, id := range ids {
						ms[i] = amqp.Publishing{DeliveryMode: amqp.Persistent, Body: fmt.Appendf(nil, `{"id":%d,"name":"n%d"}`, id, id)}
					}
					e.live(t)
					e.publishAll(in, ms)
				},
				Written: func(t *testing.T) []int64 { e.live(t); return e.peekIDs(out) },
			}
		},
		// A value that cannot be encoded as JSON.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": make(chan int)}, Partition: -1, Pos: pos}
		},
		Restart: restartRabbitMQ,
		// The server refuses the password.
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			url := "amqp://guest:" + secret + "@127.0.0.1:5672/"
			return map[string]any{"url": url, "queue": "none", "retry_timeout": time.Second},
				map[string]any{"url": url, "routing_key": "none", "retry_timeout": time.Second}
		},
	}
}

// peekIDs returns the ids of the messages q holds, leaving them there:
// it takes them unacknowledged and closes the channel, which requeues
// them.
func (e *rmq) peekIDs(q string) []int64 {
	e.t.Helper()
	ch, err := e.cn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	defer ch.Close()
	var ids []int64
	for {
		d, ok, err := ch.Get(q, false)
		if err != nil {
			e.t.Fatal(err)
		}
		if !ok {
			return ids
		}
		var id int64
		if _, err := fmt.Sscanf(string(d.Body), `{"id":%d,`, &id); err != nil {
			e.t.Fatalf("message %q: %v", d.Body, err)
		}
		ids = append(ids, id)
	}
}

// live connects e again when a server restart closed its connection.
func (e *rmq) live(t *testing.T) {
	if e.cn.IsClosed() {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		e.reconnect(ctx)
	}
}
