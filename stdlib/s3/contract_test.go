package s3

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the S3 source and sink against
// the test server.
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t, newEnv(t), testEndpoint, nil)) }

// TestServerRestartS3Contract kills a server of the test's own and starts
// it again on the same data while a source reads and an exactly-once sink
// writes (stdlibtest.Reconnect); PIPE_KILLTEST=1 runs it.
func TestServerRestartS3Contract(t *testing.T) {
	gw := startGateway(t)
	stdlibtest.Reconnect(t, contract(t, newEnvAt(t, gw.addr), gw.addr, gw))
}

// contract describes the connector to the suite: each target a key prefix
// of e's bucket at endpoint, its input objects under in/ (watched) and its output
// under out/, rotated every 10 records; Restart restarts gw when not nil.
func contract(t *testing.T, e *s3Env, endpoint string, gw *gateway) stdlibtest.Connector {
	attrs := func(extra map[string]any) map[string]any {
		m := e.attrs(extra)
		m["endpoint"], m["retry_timeout"] = "http://"+endpoint, 30*time.Second
		return m
	}
	c := stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			dir := fmt.Sprintf("contract%d/", rand.IntN(1e9))
			return &stdlibtest.Target{
				Source: attrs(map[string]any{"prefix": dir + "in/", "watch": true, "poll": 100 * time.Millisecond}),
				Sink:   attrs(map[string]any{"prefix": dir + "out/", "rotate_records": int64(10)}),
				Produce: func(t *testing.T, ids []int64) {
					var b bytes.Buffer
					for _, id := range ids {
						fmt.Fprintf(&b, "{\"id\":%d,\"name\":\"n%d\"}\n", id, id)
					}
					e.put(t, fmt.Sprintf("%sin/%010d.jsonl", dir, ids[0]), b.Bytes())
				},
				Written: func(t *testing.T) []int64 { return e.ids(t, dir+"out/") },
			}
		},
		// A value that cannot be encoded as JSON.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": make(chan int)}, Partition: -1, Pos: pos}
		},
		// An object under the commit record's key, as if it were a
		// folder: the server (a file system underneath) cannot write the
		// record there, after the objects it covers were uploaded.
		BreakCommit: func(t *testing.T, tg *stdlibtest.Target) func() {
			key := "_pipe/" + tg.Pipeline + ".out.0.json"
			old, err := e.cli.GetObject(context.Background(), e.bucket, key, minio.GetObjectOptions{})
			var data []byte
			if err == nil {
				var b bytes.Buffer
				if _, err := b.ReadFrom(old); err == nil {
					data = b.Bytes()
				}
				old.Close()
			}
			e.cli.RemoveObject(context.Background(), e.bucket, key, minio.RemoveObjectOptions{})
			e.put(t, key+"/x", []byte("x"))
			return func() {
				if err := e.cli.RemoveObject(context.Background(), e.bucket, key+"/x", minio.RemoveObjectOptions{}); err != nil {
					t.Fatal(err)
				}
				if data != nil {
					e.put(t, key, data)
				}
			}
		},
		// The server refuses a wrong secret key.
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			return attrs(map[string]any{"secret_key": secret, "retry_timeout": time.Second}),
				attrs(map[string]any{"secret_key": secret, "retry_timeout": time.Second})
		},
	}
	if gw != nil {
		c.Restart = func(t *testing.T) { gw.restart(2 * time.Second) }
	}
	return c
}
