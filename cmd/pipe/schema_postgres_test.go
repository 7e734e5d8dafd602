package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemaPullPostgres: `pipe schema pull --postgres` writes a table's
// row type as a schema that a postgres_cdc source declares, so that pipe
// check types its rows offline: a wrong use is an error at its place.
func TestSchemaPullPostgres(t *testing.T) {
	u, conn := pgServer(t)
	table := fmt.Sprintf("pull_orders_%d", rand.IntN(1e9))
	if _, err := conn.Exec(t.Context(), "CREATE TABLE "+table+` (id bigint PRIMARY KEY, amount numeric(10,2) NOT NULL,
		note text, tags text[], doc jsonb, placed timestamptz NOT NULL DEFAULT now(), raw bytea)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE "+table) })
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"schema", "pull", "--postgres", u.String(), "--table", "public." + table, "-o", filepath.Join(dir, "schemas")}, nil, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "schemas", table+".pipe"))
	if err != nil {
		t.Fatal(err)
	}
	name := schemaName(table)
	want := "schema " + name + ` {
  id:     int
  amount: float
  note:   string?
  tags:   list<string?>?
  doc:    any?
  placed: timestamp
  raw:    bytes?
}
`
	if got := string(b[bytes.IndexByte(b, '\n')+1:]); got != want {
		t.Fatalf("pulled:\n%s\nwant:\n%s", got, want)
	}
	pipeline := func(expr string) string {
		return fmt.Sprintf(`import "schemas/%s.pipe" as orders

source changes: postgres_cdc {
  dsn         = "postgres://postgres@127.0.0.1/test"
  slot        = "pull"
  publication = "pull"
  tables      = ["public.%s"]
  schema      = orders.%s
}

transform m: map {
  id   := after?.id ?? 0
  rest := %s
}

sink out: stdout {}

changes -> m -> out
`, table, table, name, expr)
	}
	write := func(src string) string {
		p := filepath.Join(dir, "p.pipe")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out.Reset()
	if code := run([]string{"check", write(pipeline(`(after?.amount ?? 0.0) - (before?.amount ?? 0.0)`))}, nil, &out, &errb); code != exitOK {
		t.Fatalf("check of a typed use: exit %d: %s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"check", write(pipeline(`(after?.amount ?? 0.0) > "x"`))}, nil, &out, &errb); code == exitOK || !strings.Contains(out.String(), "p.pipe:13:34: error PIPE105") {
		t.Fatalf("check of a mistyped use: exit %d: %s%s", code, out.String(), errb.String())
	}
	if code := run([]string{"schema", "pull", "--postgres", u.String(), "--table", "public.nope_" + table, "-o", dir}, nil, &out, &errb); code == exitOK || !strings.Contains(errb.String(), "nope_"+table) {
		t.Fatalf("pull of a missing table: exit %d: %s", code, errb.String())
	}
}
