package postgres

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"pipe.dev/pipe/internal/proctest"
)

// TestRunPositions runs a generate → postgres pipeline (exactly once,
// insert mode, so that a record written twice shows) under `pipe run`, the
// way users rerun it: with the state directory kept or deleted, into a new
// table, into a table dropped and created again. Every table ends with
// every record exactly once, and the log says why records were dropped or
// written again. pipe offsets shows and resets the sink's positions.
func TestRunPositions(t *testing.T) {
	e := newPG(t)
	bin := proctest.BuildPipe(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "gen_to_pg.pipe")
	src := `pipeline gen_to_pg {
  delivery   = exactly_once
  checkpoint = 100ms
}

schema Row {
  id:   int
  name: string
}

source in: generate {
  count  = 1000
  batch  = 100
  fields = { id: seq(), name: "n" }
}

sink out: postgres {
  dsn           = "${env:PG_URL}"
  table         = "${env:PG_TABLE}"
  offsets_table = "` + e.table("pipe_offsets") + `"
  create_table  = true
  schema        = Row
}

in -> out
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	pipe := func(table string, args ...string) string {
		t.Helper()
		args = append(append([]string{args[0], "--state-dir", state}, args[1:]...), file)
		cmd := osexec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PG_URL="+testDSN(), "PG_TABLE="+e.table(table))
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Run(); err != nil {
			t.Fatalf("pipe %s into %s: %v\n%s", strings.Join(args, " "), table, err, logs.String())
		}
		return logs.String()
	}
	run := func(table string) string { return pipe(table, "run") }
	check := func(table, logs string, says ...string) {
		t.Helper()
		got := e.rows("SELECT count(*) AS rows, count(DISTINCT id) AS ids FROM " + e.table(table))
		if got[0] != "rows=1000 ids=1000" {
			t.Errorf("%s holds %s, want rows=1000 ids=1000; log:\n%s", table, got[0], logs)
		}
		for _, s := range says {
			if !strings.Contains(logs, s) {
				t.Errorf("log lacks %q:\n%s", s, logs)
			}
		}
	}

	check("first", run("first"), "postgres: created table")

	// The state directory deleted: the source reads everything again and
	// the sink drops what it holds, saying so.
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	check("first", run("first"), "dropped replayed records the sink already holds", "records=1000")

	// A new table, the state directory kept: the state store's positions
	// do not skip what the new table never got.
	check("second", run("second"), "postgres: created table",
		"an exactly-once sink holds nothing of a partition read before")

	// A new table, the state directory deleted: the positions held for
	// the old table are not the new one's.
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	check("third", run("third"), "postgres: created table", "positions_forgotten=1")

	// The table dropped: created again and refilled.
	e.exec("DROP TABLE " + e.table("third"))
	check("third", run("third"), "postgres: created table", "positions_forgotten=1")

	// The table dropped and created again by hand: the positions were
	// stored for the dropped one.
	e.exec("DROP TABLE " + e.table("third"))
	e.exec("CREATE TABLE " + e.table("third") + " (id bigint, name text)")
	check("third", run("third"), "held positions not applied: they were stored for another table")

	// And a rerun over it writes nothing twice.
	check("third", run("third"))

	// pipe offsets shows what the sink holds, and resets it with the
	// state store: the emptied table is refilled.
	if out := pipe("third", "offsets", "show"); !regexp.MustCompile(`(?m)^in +gen/0 +sink out \(postgres\) +1000 `).MatchString(out) {
		t.Errorf("pipe offsets show:\n%s", out)
	}
	pipe("third", "offsets", "reset", "--source", "in")
	e.exec("TRUNCATE " + e.table("third"))
	check("third", run("third"))
}
