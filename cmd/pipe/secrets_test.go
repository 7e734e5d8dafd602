package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgServer returns the test server's URL (PIPE_PG_URL or the local one) and
// an open connection to it. A missing server skips the test, or fails it
// when CI=true.
func pgServer(t *testing.T) (*url.URL, *pgx.Conn) {
	t.Helper()
	dsn := os.Getenv("PIPE_PG_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("postgresql (PIPE_PG_URL or 127.0.0.1:5432) is not reachable: %v", err)
		}
		t.Skipf("postgresql (PIPE_PG_URL or 127.0.0.1:5432) is not reachable: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return u, conn
}

// pgURL returns "postgres://user:PASSWORD@host/db?query" for the server u,
// with the password spliced in as written (a reference, typically).
func pgURL(u *url.URL, password, db string) string {
	if db == "" {
		db = u.Path
	}
	q := ""
	if u.RawQuery != "" {
		q = "?" + u.RawQuery
	}
	return fmt.Sprintf("postgres://%s:%s@%s/%s%s", u.User.Username(), password, u.Host, strings.TrimPrefix(db, "/"), q)
}

// runPipe runs `pipe run` on src with debug JSON logs and returns the exit
// code and everything written to stdout and stderr.
func runPipe(t *testing.T, src string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "p.pipe")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := run([]string{"run", "-q", "--log-format", "json", "--log-level", "debug",
		"--state-dir", filepath.Join(dir, "state"), file}, strings.NewReader(""), &out, &out)
	return code, out.String()
}

// assertHidden fails when output shows secret or any piece of it between
// its special characters that is 4 bytes or longer.
func assertHidden(t *testing.T, output, secret string) {
	t.Helper()
	pieces := append([]string{secret}, regexp.MustCompile(`[^A-Za-z0-9]+`).Split(secret, -1)...)
	for _, p := range pieces {
		if len(p) >= 4 && strings.Contains(output, p) {
			t.Errorf("the output shows %q of the secret:\n%s", p, output)
		}
	}
}

const pgSinkPipe = `source gen: generate {
  count  = 3
  fields = { id = seq(start = 1) }
}
sink w: postgres {
  dsn           = "%s"
  table         = "%s"
  delivery      = at_least_once
  retry_timeout = 2s
}
gen -> w
`

// A secret in an attribute that is not marked secret is still never shown:
// the error names the reference instead.
func TestRunRedactsSecretInAnyAttribute(t *testing.T) {
	u, _ := pgServer(t)
	const secret = "Sup3rS3cretValue"
	t.Setenv("PIPE_TEST_TABLE_SECRET", secret)
	code, out := runPipe(t, fmt.Sprintf(pgSinkPipe, u.String(), "no_such_schema.${env:PIPE_TEST_TABLE_SECRET}"))
	if code != exitFindings {
		t.Fatalf("exit %d, want %d:\n%s", code, exitFindings, out)
	}
	if !strings.Contains(out, `no_such_schema.${env:PIPE_TEST_TABLE_SECRET}`) {
		t.Errorf("the error does not name the reference:\n%s", out)
	}
	assertHidden(t, out, secret)
}
