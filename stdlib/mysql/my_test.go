package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// testAddr is the server the tests use: PIPE_MYSQL_ADDR, or the local
// MariaDB.
func testAddr() string { return testkit.Env("PIPE_MYSQL_ADDR", "127.0.0.1:3306") }

// testDSN is the DSN of database db as root without a password.
func testDSN(db string) string { return "root@tcp(" + testAddr() + ")/" + db }

// myEnv is one test's connection and its own database, dropped at the end.
type myEnv struct {
	t  testing.TB
	db *sql.DB
	// name of the test's database
	name string
}

// newMy connects to the test server and creates a database for the test.
// A missing server skips the test, or fails it when CI=true.
func newMy(t testing.TB) *myEnv {
	t.Helper()
	db, err := sql.Open("mysql", testDSN("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		testkit.Missing(t, "mariadb (PIPE_MYSQL_ADDR or 127.0.0.1:3306) is not reachable: %v", err)
	}
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"))
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("pt_%s_%06d", name, rand.IntN(1000000))
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+quote(name)); err != nil {
		t.Fatalf("create database: %v", err)
	}
	db.Close()
	e := &myEnv{t: t, name: name}
	e.db = e.open()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db := e.open()
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP DATABASE "+quote(name)); err != nil {
			t.Errorf("drop database: %v", err)
		}
		e.db.Close()
	})
	return e
}

// open returns a pool on the test's database.
func (e *myEnv) open() *sql.DB {
	cfg, _ := mysql.ParseDSN(testDSN(e.name))
	cfg.ParseTime, cfg.Loc = true, time.UTC
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	cfg.Logger = quietLogger{}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return sql.OpenDB(c)
}

func (e *myEnv) dsn() string { return testDSN(e.name) }

// exec runs a statement, failing the test on error.
func (e *myEnv) exec(q string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Exec(q, args...); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

// rows returns "col=value ..." lines of a query, one per row.
func (e *myEnv) rows(q string) []string {
	e.t.Helper()
	rows, err := e.db.Query(q)
	if err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	names, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			e.t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case time.Time:
				v = x.UTC().Format(time.RFC3339)
			case []byte:
				v = string(x)
			}
			parts[i] = fmt.Sprintf("%s=%v", names[i], v)
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *myEnv) count(table string) int64 {
	e.t.Helper()
	var n int64
	if err := e.db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// config builds a Config of spec as the executor would.
func (e *myEnv) config(spec *stdlib.Spec, attrs map[string]any, typ *types.Type, d stdlib.Delivery) stdlib.Config {
	a := map[string]any{"dsn": e.dsn()}
	for _, p := range spec.Params {
		if p.Default != nil {
			a[p.Name] = p.Default
		}
	}
	for k, v := range attrs {
		a[k] = v
	}
	return stdlib.Config{
		Pipeline: "p_" + e.name, Stage: "out", Attrs: a, Input: typ, Delivery: d,
		Task: 0, Tasks: 1, Logger: e.logger(),
	}
}

func (e *myEnv) sinkConfig(attrs map[string]any, typ *types.Type, d stdlib.Delivery) stdlib.Config {
	return e.config(SinkSpec, attrs, typ, d)
}

// logger logs to the test log under -v.
func (e *myEnv) logger() *slog.Logger { return testkit.Logger(e.t) }

func (e *myEnv) openSink(cfg stdlib.Config) (*sink, []stdlib.Position) {
	e.t.Helper()
	return stdlibtest.OpenSink[*sink](e.t)(newSink(cfg))
}

func (e *myEnv) openSource(attrs map[string]any, schema *types.Type, resume stdlib.Resumer) *source {
	e.t.Helper()
	cfg := e.config(SourceSpec, attrs, nil, "")
	cfg.Stage = "src"
	cfg.Schema = schema
	s, err := newSource(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := s.Open(e.t.Context(), resume); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// The benchmark record shape and its records (stdlibtest).
var (
	eventType = stdlibtest.EventType
	events    = stdlibtest.Events
)

func pos(off int64) []stdlib.Position {
	return []stdlib.Position{{Source: "in", Partition: "p0", Offset: off}}
}

// resumer resumes every partition at a fixed offset for one identity.
type resumer struct {
	off int64
	id  string // "" matches any
	got string // the identity asked for
}

func (r *resumer) Resume(partition, identity string) (int64, bool) {
	r.got = identity
	if r.id != "" && r.id != identity {
		return 0, false
	}
	return r.off, true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
