package mysql

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestContract runs the contract suite on the MySQL source and sink.
func TestContract(t *testing.T) { stdlibtest.Run(t, contract(t)) }

// TestServerRestartMySQLContract stops MariaDB and starts it again while
// a source reads and an exactly-once sink writes (stdlibtest.Reconnect).
// It restarts the machine's MariaDB, so it runs only with PIPE_KILLTEST=1.
func TestServerRestartMySQLContract(t *testing.T) { stdlibtest.Reconnect(t, contract(t)) }

// contract describes the connector to the suite: each target a table (id
// bigint PRIMARY KEY CHECK (id >= 0), name varchar) in the test's
// database, the positions in the database's pipe_offsets.
func contract(t *testing.T) stdlibtest.Connector {
	e := newMy(t)
	return stdlibtest.Connector{
		Source: SourceSpec,
		Sink:   SinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			table := fmt.Sprintf("contract_%d", rand.IntN(1e9))
			e.exec("CREATE TABLE " + table + " (id bigint PRIMARY KEY CHECK (id >= 0), name varchar(40))")
			return &stdlibtest.Target{
				Source: map[string]any{"dsn": e.dsn(), "table": table, "incrementing_column": "id", "poll": 50 * time.Millisecond},
				Sink:   map[string]any{"dsn": e.dsn(), "table": table, "key": []any{"id"}, "retry_timeout": 30 * time.Second},
				Input:  stdlibtest.Type,
				Produce: func(t *testing.T, ids []int64) {
					e.exec("INSERT INTO " + table + " VALUES " + stdlibtest.SQLValues(ids))
				},
				Written: func(t *testing.T) []int64 { return stdlibtest.RowIDs(t, e.rows("SELECT id FROM "+table)) },
			}
		},
		// The table's CHECK constraint: only the server knows.
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": int64(-1), "name": "bad"}, Partition: -1, Pos: pos}
		},
		// A trigger refusing every position of the target's pipeline: the
		// commit fails after the rows were written in its transaction.
		BreakCommit: func(t *testing.T, tg *stdlibtest.Target) func() {
			trig := fmt.Sprintf("brk_%d", rand.IntN(1e9))
			for _, ev := range []string{"INSERT", "UPDATE"} {
				e.exec(fmt.Sprintf("CREATE TRIGGER %s_%s BEFORE %s ON pipe_offsets FOR EACH ROW "+
					"IF NEW.pipeline = '%s' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'commit broken by the test'; END IF",
					trig, ev, ev, tg.Pipeline))
			}
			return func() {
				for _, ev := range []string{"INSERT", "UPDATE"} {
					e.exec("DROP TRIGGER " + trig + "_" + ev)
				}
			}
		},
		// A user the server does not know.
		Secret: func(t *testing.T, secret string) (map[string]any, map[string]any) {
			dsn := "nobody:" + secret + "@tcp(" + testAddr() + ")/" + e.name
			return map[string]any{"dsn": dsn, "table": "none", "incrementing_column": "id", "retry_timeout": time.Second},
				map[string]any{"dsn": dsn, "table": "none", "retry_timeout": time.Second}
		},
		Restart: func(t *testing.T) {
			restartServer(t)
			waitServer(t.Context(), t, e)
		},
	}
}
