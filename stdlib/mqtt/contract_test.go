package mqtt

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the source and the sink, both
// at least once: the broker keeps, in the source's persistent session,
// what the source did not acknowledge (Acks).
func TestContract(t *testing.T) {
	needBroker(t)
	stdlibtest.Run(t, contract())
}

// TestServerRestartMQTTContract restarts the local Mosquitto while a
// source reads and a sink publishes (stdlibtest.Reconnect); PIPE_KILLTEST=1
// runs it.
func TestServerRestartMQTTContract(t *testing.T) {
	needBroker(t)
	if os.Geteuid() != 0 {
		t.Skip("restarting mosquitto needs root")
	}
	stdlibtest.Reconnect(t, contract())
}

// contract describes the connector to the suite: each target a topic the
// source reads, through a session made (subscribed) before anything is
// published, and a topic the sink publishes to, watched by a subscriber
// of the test's from the start, through a session of its own.
func contract() stdlibtest.Connector {
	return stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Acks:   true,
		Target: func(t *testing.T) *stdlibtest.Target {
			in, out, id := uniq("contract/in"), uniq("contract/out"), uniq("contract")
			t.Cleanup(func() { dropSession(t, id) })
			session := testClient(t, id, false, nil)
			subscribe(t, session, in)
			session.Disconnect(100) // the source takes the session over
			pub := testClient(t, uniq("pub"), true, nil)
			got := &collector{}
			// A persistent session: the broker keeps the subscription
			// across its restart.
			sub := uniq("sub")
			t.Cleanup(func() { dropSession(t, sub) })
			subscribe(t, testClient(t, sub, false, got.handle), out)
			return &stdlibtest.Target{
				Source: map[string]any{"brokers": []any{testBroker()}, "client_id": id, "topic": in, "retry_timeout": time.Minute},
				Sink:   map[string]any{"brokers": []any{testBroker()}, "topic": out, "retry_timeout": time.Minute},
				Produce: func(t *testing.T, ids []int64) {
					for _, n := range ids {
						publish(t, pub, in, 1, fmt.Sprintf(`{"id":%d,"name":"n%d"}`, n, n))
					}
				},
				Written: func(t *testing.T) []int64 {
					var ids []int64
					for _, p := range got.settled() {
						var v struct{ ID int64 }
						if err := json.Unmarshal([]byte(p), &v); err != nil {
							t.Fatalf("message %q: %v", p, err)
						}
						ids = append(ids, v.ID)
					}
					return ids
				},
			}
		},
		// A value that cannot be encoded as JSON.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": make(chan int)}, Partition: -1, Pos: pos}
		},
		Restart: restartMosquitto,
		// No broker answers there: the password is never accepted.
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			attrs := func(k, v string) map[string]any {
				return map[string]any{"brokers": []any{"127.0.0.1:1"}, "username": "u", "password": secret,
					"retry_timeout": time.Second, "connect_timeout": time.Second, k: v}
			}
			return attrs("topic", "none"), attrs("topic", "none")
		},
	}
}

// subscribe subscribes cl to topic at QoS 1 and waits for the broker's
// answer.
func subscribe(t testing.TB, cl paho.Client, topic string) {
	t.Helper()
	tok := cl.Subscribe(topic, 1, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to %s: %v", topic, tok.Error())
	}
}

// settled returns the payloads once none came for a second.
func (c *collector) settled() []string {
	n := -1
	for {
		time.Sleep(time.Second)
		p := c.payloads()
		if len(p) == n {
			return p
		}
		n = len(p)
	}
}
