package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pipe.dev/pipe/internal/testkit"
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
		testkit.Missing(t, "postgresql (PIPE_PG_URL or 127.0.0.1:5432) is not reachable: %v", err)
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

// A password with the characters a URL reserves works when spliced into a
// URL dsn: the reference is percent-encoded. A connection failure shows no
// piece of it, and a whole dsn secret it breaks is refused at once.
func TestRunDSNPasswordSpecialCharacters(t *testing.T) {
	u, conn := pgServer(t)
	t.Run("connects", func(t *testing.T) {
		// The test server trusts every password: this checks that the URL
		// still names the right server, database and user.
		const secret = `Zq7Kx@Vb9Wm/Hj4Lp#Tn6Rc% Yd8'Fg\`
		t.Setenv("PIPE_TEST_PG_PW", secret)
		table := fmt.Sprintf("secrets_dsn_%06d", rand.IntN(1000000))
		if _, err := conn.Exec(t.Context(), "CREATE TABLE "+table+" (id bigint)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE "+table) })
		code, out := runPipe(t, fmt.Sprintf(pgSinkPipe, pgURL(u, "${env:PIPE_TEST_PG_PW}", ""), table))
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		assertHidden(t, out, secret)
		var n int
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 3 {
			t.Fatalf("table holds %d rows (%v), want 3", n, err)
		}
	})
	for _, c := range []struct {
		name, dsn, want string
		env             map[string]string
	}{
		{"spliced, connection fails", pgURL(u, "${env:PIPE_TEST_PG_PW}", "no_such_db_secrets"),
			`database "no_such_db_secrets" does not exist`,
			map[string]string{"PIPE_TEST_PG_PW": "Zq7Kx@Vb9Wm/Hj4Lp#Tn6Rc"}},
		{"whole dsn unencoded", "${env:PIPE_TEST_PG_DSN}", `invalid dsn: "@" in its host or database name`,
			map[string]string{"PIPE_TEST_PG_DSN": pgURL(u, "Zq7Kx@Vb9Wm/Hj4Lp#Tn6Rc", "")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			start := time.Now()
			code, out := runPipe(t, fmt.Sprintf(pgSinkPipe, c.dsn, "never_written"))
			if code != exitFindings || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, want %d and an error with %q:\n%s", code, exitFindings, c.want, out)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the run took %s to fail: it retried", d)
			}
			assertHidden(t, out, "Zq7Kx@Vb9Wm/Hj4Lp#Tn6Rc")
		})
	}
}
