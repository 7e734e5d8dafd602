package postgres

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the PostgreSQL source and sink.
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t)) }

// TestServerRestart restarts the server while a source reads and an
// exactly-once sink writes (stdlibtest.Reconnect). It restarts the
// machine's PostgreSQL, so it runs only with PIPE_KILLTEST=1 and
// PIPE_PG_RESTART=1.
func TestServerRestart(t *testing.T) {
	if os.Getenv("PIPE_PG_RESTART") != "1" {
		t.Skip("restarts the local postgresql: set PIPE_PG_RESTART=1")
	}
	stdlibtest.Reconnect(t, contract(t))
}

// contract describes the connector to the suite: each target a table (id
// bigint PRIMARY KEY CHECK (id >= 0), name text) in the test's schema, the
// positions in the schema's own offsets table.
func contract(t *testing.T) stdlibtest.Connector {
	e := newPG(t)
	return stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			table := e.table(fmt.Sprintf("contract_%d", rand.IntN(1e9)))
			e.exec(`CREATE TABLE ` + table + ` (id bigint PRIMARY KEY CHECK (id >= 0), name text)`)
			return &stdlibtest.Target{
				Source: map[string]any{"dsn": testDSN(), "table": table, "incrementing_column": "id", "poll": 50 * time.Millisecond},
				Sink: map[string]any{"dsn": testDSN(), "table": table, "key": []any{"id"},
					"offsets_table": e.table("pipe_offsets")},
				Input: stdlibtest.Type,
				Produce: func(t *testing.T, ids []int64) {
					e.exec(`INSERT INTO ` + table + ` VALUES ` + stdlibtest.SQLValues(ids))
				},
				Written: func(t *testing.T) []int64 { return stdlibtest.RowIDs(t, e.rows("SELECT id FROM "+table)) },
			}
		},
		// The table's CHECK constraint: only the server knows.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": "bad"}, Partition: -1, Pos: pos}
		},
		// A role the server does not know.
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			dsn := "postgres://nobody:" + secret + "@127.0.0.1:5432/test?sslmode=disable"
			return map[string]any{"dsn": dsn, "table": e.table("none"), "incrementing_column": "id", "retry_timeout": time.Second},
				map[string]any{"dsn": dsn, "table": e.table("none"), "retry_timeout": time.Second}
		},
		Restart: func(t *testing.T) {
			restartServer(t)
			waitConn(t.Context(), t, e)
		},
	}
}
