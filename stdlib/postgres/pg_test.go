package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// testDSN is the server the tests use: PIPE_PG_URL, or the local one.
func testDSN() string {
	return testkit.Env("PIPE_PG_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// pgEnv is one test's connection and its own schema, dropped at the end.
type pgEnv struct {
	t      testing.TB
	conn   *pgx.Conn
	schema string
}

// newPG connects to the test server and creates a schema for the test. A
// missing server skips the test, or fails it when CI=true.
func newPG(t testing.TB) *pgEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		testkit.Missing(t, "postgresql (PIPE_PG_URL or 127.0.0.1:5432) is not reachable: %v", err)
	}
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"))
	if len(name) > 40 {
		name = name[:40]
	}
	schema := fmt.Sprintf("pt_%s_%06d", name, rand.IntN(1000000))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+quote(schema)); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	e := &pgEnv{t: t, conn: conn, schema: schema}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := e.conn.Exec(ctx, "DROP SCHEMA "+quote(schema)+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
		e.conn.Close(ctx)
	})
	return e
}

// exec runs statements, failing the test on error.
func (e *pgEnv) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.conn.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// table returns the schema-qualified name of table.
func (e *pgEnv) table(name string) string { return e.schema + "." + name }

// sameRows fails t unless got holds the rows want, in order (as rows
// formats them).
func sameRows(t testing.TB, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// rows returns "col=value ..." lines of a query, one per row.
func (e *pgEnv) rows(sql string) []string {
	e.t.Helper()
	rows, err := e.conn.Query(context.Background(), sql)
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			e.t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			if tm, ok := v.(time.Time); ok {
				v = tm.UTC().Format(time.RFC3339)
			}
			parts[i] = fmt.Sprintf("%s=%v", rows.FieldDescriptions()[i].Name, v)
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *pgEnv) count(table string) int64 {
	e.t.Helper()
	var n int64
	if err := e.conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// sinkConfig builds a sink Config as the executor would.
func (e *pgEnv) sinkConfig(attrs map[string]any, typ *types.Type, d stdlib.Delivery) stdlib.Config {
	a := map[string]any{"dsn": testDSN()}
	for _, p := range SinkSpec.Params {
		if p.Default != nil {
			a[p.Name] = p.Default
		}
	}
	a["offsets_table"] = e.table("pipe_offsets")
	for k, v := range attrs {
		a[k] = v
	}
	return stdlib.Config{
		Pipeline: "p_" + e.schema, Stage: "out", Attrs: a, Input: typ, Delivery: d,
		Task: 0, Tasks: 1, Logger: e.logger(),
	}
}

// logger logs to the test log under -v.
func (e *pgEnv) logger() *slog.Logger { return testkit.Logger(e.t) }

func (e *pgEnv) openSink(cfg stdlib.Config) (*sink, []stdlib.Position) {
	e.t.Helper()
	return stdlibtest.OpenSink[*sink](e.t)(newSink(cfg))
}

// The benchmark record shape and its records (stdlibtest).
var (
	eventType = stdlibtest.EventType
	baseTime  = stdlibtest.EventTime
	events    = stdlibtest.Events
)

func pos(off int64) []stdlib.Position {
	return []stdlib.Position{{Source: "in", Partition: "p0", Offset: off}}
}
