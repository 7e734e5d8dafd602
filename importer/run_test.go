package importer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pipe.dev/pipe/internal/proctest"
)

// TestImportedJdbcSinkRuns imports a JDBC sink connector config (upsert by
// a value field, a ReplaceField rename and exclude, a password) and runs
// the pipeline it becomes against `pipe broker` and the PostgreSQL test
// server: the table ends holding every kept event once, renamed as the
// transform says, and the password reached the pipeline only through the
// environment variable the import named.
func TestImportedJdbcSinkRuns(t *testing.T) {
	ctx := t.Context()
	dsn := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL on 127.0.0.1:5432: %v", err)
		}
		t.Skipf("PostgreSQL on 127.0.0.1:5432 is not running: %v", err)
	}
	defer conn.Close(context.Background())
	schema := fmt.Sprintf("import_%d", rand.IntN(1e9))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	// auto.create needs a schema in pipe (the import says so): the table
	// is there, as a database administrator would have it.
	if _, err := conn.Exec(ctx, "CREATE TABLE "+schema+`.orders (id bigint PRIMARY KEY, customer text,
		amount double precision, country text, event text)`); err != nil {
		t.Fatal(err)
	}

	bin := proctest.BuildPipe(t)
	brokers := proctest.StartBroker(t, bin, 2, "--topic", "orders:2")
	topic := "orders"
	const n = 400
	if err := proctest.ProduceEvents(ctx, nil, brokers, topic, 0, n, 0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "orders.json")
	os.WriteFile(cfg, []byte(`{"name": "orders-sink", "config": {
  "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
  "topics": "orders",
  "connection.url": "jdbc:postgresql://127.0.0.1:5432/test?sslmode=disable",
  "connection.user": "postgres",
  "connection.password": "not-used-by-trust-auth",
  "table.name.format": "`+schema+`.${topic}",
  "insert.mode": "upsert", "pk.mode": "record_value", "pk.fields": "id",
  "auto.create": "true",
  "value.converter": "org.apache.kafka.connect.json.JsonConverter",
  "value.converter.schemas.enable": "false",
  "transforms": "rename",
  "transforms.rename.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
  "transforms.rename.renames": "user:customer",
  "transforms.rename.exclude": "ts"
}}`), 0o644)
	out := filepath.Join(dir, "orders.pipe")
	if b, err := osexec.Command(bin, "import", "-o", out, cfg).CombinedOutput(); err != nil {
		t.Fatalf("pipe import: %v\n%s", err, b)
	}
	text, _ := os.ReadFile(out)
	if strings.Contains(string(text), "not-used-by-trust-auth") {
		t.Fatalf("the password is in the pipeline:\n%s", text)
	}
	// The group has no committed offsets: the topic is read from its
	// beginning, as Connect's sink consumers do.
	run := osexec.Command(bin, "run", "-q", "--state-dir", filepath.Join(dir, "state"), out)
	run.Env = append(os.Environ(), "KAFKA_BROKERS="+brokers, "ORDERS_SINK_CONNECTION_PASSWORD=not-used-by-trust-auth")
	run.Stderr = &proctest.LogWriter{T: t, Prefix: "pipe run: "}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { run.Process.Kill(); run.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	var rows, ids int
	for time.Now().Before(deadline) {
		err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM "+schema+".orders").Scan(&rows, &ids)
		if err == nil && rows >= n {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rows != n || ids != n {
		t.Fatalf("the table holds %d rows of %d ids, want %d of each:\n%s", rows, ids, n, text)
	}
	var customer string
	if err := conn.QueryRow(ctx, "SELECT customer FROM "+schema+".orders WHERE id = 7").Scan(&customer); err != nil || customer != "u7" {
		t.Fatalf("row 7: customer %q, %v (want u7)", customer, err)
	}
}
