package redis

import (
	"maps"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the stream source and the
// sink (XADD, exactly once with its positions in a hash of the test's).
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t, newClient(t), testAddr(), nil)) }

// TestServerRestartRedisContract stops a redis-server of the test's own
// (appendfsync always) and starts it again while a source reads and an
// exactly-once sink writes (stdlibtest.Reconnect); PIPE_KILLTEST=1 runs it.
func TestServerRestartRedisContract(t *testing.T) {
	srv := startServer(t, false, "--appendonly", "yes", "--appendfsync", "always")
	stdlibtest.Reconnect(t, contract(t, clientAt(t, srv.addr), srv.addr, srv))
}

// contract describes the connector to the suite: each target an input
// stream (read by group "g", its entries' fields id and name) and an
// output stream of its own on the server at addr; Restart restarts srv
// when not nil.
func contract(t *testing.T, cl *goredis.Client, addr string, srv *testServer) stdlibtest.Connector {
	c := stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			prefix := uniq("contract")
			t.Cleanup(func() { delPrefix(cl, prefix) })
			return &stdlibtest.Target{
				Source: map[string]any{"addr": addr, "stream": prefix + ":in", "group": "g", "retry_timeout": 30 * time.Second},
				Sink: map[string]any{"addr": addr, "command": stdlib.Ident("xadd"), "key": prefix + ":out",
					"positions_key": prefix + ":positions", "retry_timeout": 30 * time.Second},
				Produce: func(t *testing.T, ids []int64) {
					for _, id := range ids {
						if err := cl.XAdd(t.Context(), &goredis.XAddArgs{Stream: prefix + ":in",
							Values: []any{"id", id, "name", "n" + strconv.FormatInt(id, 10)}}).Err(); err != nil {
							t.Fatal(err)
						}
					}
				},
				Written: func(t *testing.T) []int64 {
					msgs, err := cl.XRange(t.Context(), prefix+":out", "-", "+").Result()
					if err != nil {
						t.Fatal(err)
					}
					ids := make([]int64, len(msgs))
					for i, m := range msgs {
						ids[i] = stdlibtest.ID(t, stdlib.Record{Value: m.Values})
					}
					return ids
				},
			}
		},
		// A value that cannot be encoded as JSON.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": make(chan int)}, Partition: -1, Pos: pos}
		},
		// No such ACL user: the server refuses the password (WRONGPASS).
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			auth := map[string]any{"addr": addr, "username": "pipetest-nobody", "password": secret, "retry_timeout": time.Second}
			return with(auth, map[string]any{"stream": "none", "group": "g"}), with(auth, map[string]any{"key": "none"})
		},
	}
	if srv != nil {
		c.Restart = func(t *testing.T) { srv.stop(); srv.start() }
	}
	return c
}

// with returns a copy of a with b's entries added.
func with(a, b map[string]any) map[string]any {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}
