package postgres

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	"pipe.dev/pipe/stdlib"
)

// logCapture is a log destination a test reads back.
type logCapture struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// take returns what was logged since the last call.
func (l *logCapture) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

// capture makes cfg log into the returned capture (and the test log).
func capture(t *testing.T, cfg *stdlib.Config) *logCapture {
	l := &logCapture{}
	cfg.Logger = slog.New(slog.NewTextHandler(l, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.take())
		}
	})
	return l
}

func idPos(src, part string, off int64, id string) stdlib.Position {
	return stdlib.Position{Source: src, Partition: part, Offset: off, Identity: id}
}

// commitAt writes records and commits them with positions.
func commitAt(t *testing.T, s *sink, from, to int64, ps ...stdlib.Position) {
	t.Helper()
	if err := s.Write(t.Context(), events(from, to)); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: uint64(to), Positions: ps}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestSinkPositionIdentity: an offsets table of an earlier version (no
// identity, no target) is migrated; its positions are held with an unknown
// identity; the identity of a checkpoint's positions is stored with them
// and returned by Open.
func TestSinkPositionIdentity(t *testing.T) {
	e := newPG(t)
	table := e.table("ident")
	e.exec(`CREATE TABLE ` + table + ` (id bigint, "user" text, amount float8, country text, event text, ts timestamptz)`)
	e.exec(`CREATE TABLE ` + e.table("pipe_offsets") + ` (pipeline text NOT NULL, sink text NOT NULL, source text NOT NULL,
  partition text NOT NULL, "offset" bigint NOT NULL, PRIMARY KEY (pipeline, sink, source, partition))`)
	cfg := e.sinkConfig(map[string]any{"table": table}, eventType, stdlib.ExactlyOnce)
	e.exec(`INSERT INTO `+e.table("pipe_offsets")+` VALUES ($1, 'out', 'in', 'p0', 41)`, cfg.Pipeline)
	logs := capture(t, &cfg)

	s, held := e.openSink(cfg)
	if want := []stdlib.Position{idPos("in", "p0", 41, "")}; !reflect.DeepEqual(held, want) {
		t.Fatalf("held %v, want %v", held, want)
	}
	if l := logs.take(); !strings.Contains(l, "added columns identity and target to the offsets table") {
		t.Errorf("log:\n%s", l)
	}
	commitAt(t, s, 42, 50, idPos("in", "p0", 49, "cluster-A"), idPos("in", "p1", 7, ""))
	_, held = e.openSink(cfg)
	if want := []stdlib.Position{idPos("in", "p0", 49, "cluster-A"), idPos("in", "p1", 7, "")}; !reflect.DeepEqual(held, want) {
		t.Fatalf("held %v, want %v", held, want)
	}
	got := e.rows(`SELECT partition, identity, target = '` + table + `'::regclass AS ours FROM ` + e.table("pipe_offsets") +
		` WHERE source <> '' ORDER BY partition`)
	if want := []string{"partition=p0 identity=cluster-A ours=true", "partition=p1 identity=<nil> ours=true"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("offsets rows %v, want %v", got, want)
	}
}

// TestSinkPositionsFollowTable: the positions are held for the table they
// were committed with. Another table (the `table` attribute changed, the
// table dropped and created again) holds none of them, with a warning
// naming both; a renamed table keeps them; a table the sink creates starts
// with none, even before its first checkpoint.
func TestSinkPositionsFollowTable(t *testing.T) {
	e := newPG(t)
	mk := func(name string) string {
		e.exec(`CREATE TABLE ` + e.table(name) + ` (id bigint, "user" text, amount float8, country text, event text, ts timestamptz)`)
		return e.table(name)
	}
	open := func(table string, create bool) (*sink, []stdlib.Position, string) {
		t.Helper()
		cfg := e.sinkConfig(map[string]any{"table": table, "create_table": create}, eventType, stdlib.ExactlyOnce)
		logs := capture(t, &cfg)
		s, held := e.openSink(cfg)
		return s, held, logs.take()
	}
	offsets := func() []string {
		return e.rows(`SELECT partition, "offset", target::regclass::text AS target FROM ` + e.table("pipe_offsets") +
			` WHERE source <> '' ORDER BY partition`)
	}
	p0 := idPos("in", "p0", 99, "X")

	s, _, _ := open(mk("one"), false)
	commitAt(t, s, 0, 100, p0)

	// `table` names another table.
	s, held, logs := open(mk("two"), false)
	if len(held) != 0 {
		t.Fatalf("another table holds %v", held)
	}
	for _, want := range []string{"held positions not applied: they were stored for another table",
		"table=" + e.table("two"), "stored_for=\"table " + e.table("one") + "\"", "positions=1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	// Its first checkpoint stores its own positions and drops the others.
	commitAt(t, s, 0, 5, idPos("in", "p1", 4, "X"))
	if got, want := offsets(), []string{"partition=p1 offset=4 target=" + e.table("two")}; !reflect.DeepEqual(got, want) {
		t.Fatalf("offsets %v, want %v", got, want)
	}

	// The table renamed, and `table` with it: the same table.
	e.exec(`ALTER TABLE ` + e.table("two") + ` RENAME TO three`)
	_, held, logs = open(e.table("three"), false)
	if want := []stdlib.Position{idPos("in", "p1", 4, "X")}; !reflect.DeepEqual(held, want) || strings.Contains(logs, "not applied") {
		t.Fatalf("renamed table holds %v, want %v; log:\n%s", held, want, logs)
	}

	// Dropped and created again by hand.
	e.exec(`DROP TABLE ` + e.table("three"))
	mk("three")
	_, held, logs = open(e.table("three"), true)
	if len(held) != 0 || !strings.Contains(logs, `stored_for="a table since dropped"`) {
		t.Fatalf("a new table of the same name holds %v; log:\n%s", held, logs)
	}

	// Created by the sink: the stage's positions are gone with the
	// creation, before any checkpoint.
	e.exec(`DROP TABLE ` + e.table("three"))
	_, held, logs = open(e.table("three"), true)
	if len(held) != 0 || !strings.Contains(logs, "positions_forgotten=1") {
		t.Fatalf("a created table holds %v; log:\n%s", held, logs)
	}
	if got := offsets(); len(got) != 0 {
		t.Fatalf("offsets after create_table: %v", got)
	}
}

// TestSinkPositionStore: StoredPositions and SetPositions on a sink that is
// not opened cover every task of the stage.
func TestSinkPositionStore(t *testing.T) {
	e := newPG(t)
	table := e.table("ps")
	task := func(i int) stdlib.Config {
		cfg := e.sinkConfig(map[string]any{"table": table, "create_table": true}, eventType, stdlib.ExactlyOnce)
		cfg.Task, cfg.Tasks = i, 2
		return cfg
	}
	store := func() *sink {
		s, err := newSink(task(0))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	stored := func() []stdlib.Position {
		t.Helper()
		ps, err := store().StoredPositions(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	// Nothing yet, not even the offsets table: none, and nothing created.
	if ps := stored(); len(ps) != 0 {
		t.Fatalf("stored %v before any run", ps)
	}
	if n := e.rows(`SELECT to_regclass('` + e.table("pipe_offsets") + `') IS NULL AS absent`); n[0] != "absent=true" {
		t.Fatal("StoredPositions created the offsets table")
	}

	s0, _ := e.openSink(task(0))
	s1, _ := e.openSink(task(1))
	commitAt(t, s0, 0, 10, idPos("in", "p0", 10, "X"), idPos("in", "p1", 20, "X"), idPos("other", "p0", 7, ""))
	commitAt(t, s1, 10, 20, idPos("in", "p0", 15, "X"), idPos("in", "p1", 5, "X"), idPos("other", "p0", 7, ""))
	want := []stdlib.Position{idPos("in", "p0", 10, "X"), idPos("in", "p1", 5, "X"), idPos("other", "p0", 7, "")}
	if got := stored(); !reflect.DeepEqual(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}

	if err := store().SetPositions(t.Context(), "in", []string{"p0"}, []stdlib.Position{idPos("in", "p0", 3, "Y")}); err != nil {
		t.Fatal(err)
	}
	want = []stdlib.Position{idPos("in", "p0", 3, "Y"), idPos("in", "p1", 5, "X"), idPos("other", "p0", 7, "")}
	if got := stored(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after set: stored %v, want %v", got, want)
	}
	if _, held := e.openSink(task(1)); !reflect.DeepEqual(held, want) {
		t.Fatalf("task 1 holds %v, want %v", held, want)
	}

	if err := store().SetPositions(t.Context(), "in", nil, nil); err != nil {
		t.Fatal(err)
	}
	want = []stdlib.Position{idPos("other", "p0", 7, "")}
	if got := stored(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reset: stored %v, want %v", got, want)
	}
	err := store().SetPositions(t.Context(), "in", nil, []stdlib.Position{idPos("other", "p0", 1, "")})
	if err == nil || !strings.Contains(err.Error(), `position other[p0]@1 is not of source "in"`) {
		t.Fatalf("setting another source's position: %v", err)
	}

	// Positions are held for a table: none to set before it exists.
	missing := e.sinkConfig(map[string]any{"table": e.table("nope")}, eventType, stdlib.ExactlyOnce)
	s, err := newSink(missing)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPositions(t.Context(), "in", nil, []stdlib.Position{idPos("in", "p0", 1, "")}); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("setting positions for a missing table: %v", err)
	}
	// at_least_once keeps none, and has none to change.
	alo, err := newSink(e.sinkConfig(map[string]any{"table": table}, eventType, stdlib.AtLeastOnce))
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := alo.StoredPositions(context.Background()); err != nil || ps != nil {
		t.Fatalf("at_least_once: %v, %v", ps, err)
	}
	if err := alo.SetPositions(t.Context(), "in", nil, nil); err != nil {
		t.Fatalf("at_least_once: %v", err)
	}
}

// recordResumer records the identities a source resumes with.
type recordResumer struct{ ids []string }

func (r *recordResumer) Resume(_, identity string) (int64, bool) {
	r.ids = append(r.ids, identity)
	return 0, false
}

// TestSourceIdentity: the source resumes its table with the server's
// system identifier, the database's OID and the table's: a table dropped
// and created again is another.
func TestSourceIdentity(t *testing.T) {
	e := newPG(t)
	table := e.table("src_ident")
	e.exec(`CREATE TABLE ` + table + ` (id bigint)`)
	identity := func() string {
		t.Helper()
		r := &recordResumer{}
		e.openSource(map[string]any{"table": table, "incrementing_column": "id"}, nil, r)
		if len(r.ids) != 1 {
			t.Fatalf("resumed %d times", len(r.ids))
		}
		return r.ids[0]
	}
	var sys int64
	var db, rel uint32
	if err := e.conn.QueryRow(t.Context(), `SELECT (SELECT system_identifier FROM pg_control_system()),
  (SELECT oid FROM pg_database WHERE datname = current_database()), $1::regclass::oid`, table).Scan(&sys, &db, &rel); err != nil {
		t.Fatal(err)
	}
	first := identity()
	if want := fmt.Sprintf("system %d database %d table %d", uint64(sys), db, rel); first != want {
		t.Fatalf("identity %q, want %q", first, want)
	}
	if again := identity(); again != first {
		t.Fatalf("identity changed from %q to %q", first, again)
	}
	e.exec(`DROP TABLE ` + table)
	e.exec(`CREATE TABLE ` + table + ` (id bigint)`)
	if next := identity(); next == first {
		t.Fatalf("a table created again has the identity of the dropped one: %q", next)
	}
}

// TestSinkCreatesSchema: create_table creates the table's schema before
// the offsets table that may live in it, and when it creates the table
// again, that table holds nothing.
func TestSinkCreatesSchema(t *testing.T) {
	e := newPG(t)
	schema := e.schema + "_new"
	t.Cleanup(func() { e.exec("DROP SCHEMA IF EXISTS " + quote(schema) + " CASCADE") })
	cfg := e.sinkConfig(map[string]any{"table": schema + ".t", "offsets_table": schema + ".offsets", "create_table": true},
		eventType, stdlib.ExactlyOnce)
	s, _ := e.openSink(cfg)
	commitAt(t, s, 0, 10, idPos("in", "p0", 9, ""))
	if _, held := e.openSink(cfg); !reflect.DeepEqual(held, []stdlib.Position{idPos("in", "p0", 9, "")}) {
		t.Fatalf("held %v", held)
	}
	e.exec("DROP TABLE " + quote(schema) + ".t")
	if _, held := e.openSink(cfg); len(held) != 0 {
		t.Fatalf("the table created again holds %v", held)
	}
}
