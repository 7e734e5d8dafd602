// Package stdlibtest is the contract suite every connector's tests run:
// given a [Connector] (its specs and how to reach the real system behind
// it), [Run] checks what stdlib's contract (stdlib/contract.go) asks of its
// source and sink, against that system:
//
//   - OpenClose: a component opens and closes; Close may be called twice,
//     and on a component never opened.
//   - SourceResume: a source resumed from positions it emitted continues
//     exactly after them (nothing missing, nothing again).
//   - SinkHeld: an exactly-once sink hands back, after a restart, the
//     positions it committed (Open, and Acquire and StoredPositions when
//     it is an [stdlib.Acquirer] or a [stdlib.PositionStore]).
//   - CheckpointAtomic: a Checkpoint is made to fail between the write and
//     the commit (its context cut short, or the connector's own
//     Connector.BreakCommit); a new instance then finds the batch in the
//     target wholly or not at all, and holds positions that agree.
//   - RecordErrors: a record the sink rejects is reported as a
//     [stdlib.RecordError] at its index, and the others are written.
//   - [Reconnect] (run on its own, as it restarts the server): source and
//     sink carry on across a restart of the server, the sink's open
//     transaction lost in it.
//   - SecretsAbsent: a secret attribute's value appears in no error and no
//     log line of a component that fails to connect with it.
//
// A source whose server keeps what it did not acknowledge (a queue)
// sets Connector.Acks; an at-least-once sink skips SinkHeld and
// CheckpointAtomic.
//
// The records are {id: int, name: string}; a source's input and a sink's
// output are told apart by their ids.
package stdlibtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// Connector describes a connector to the suite.
type Connector struct {
	// Source and Sink are the connector's specs; either may be nil.
	Source, Sink *stdlib.Spec
	// Target makes a fresh target for one case (a topic, a table, a file)
	// in the real system.
	Target func(t *testing.T) *Target
	// Bad returns a record with the given position that the sink rejects
	// on its own merits (a value it cannot encode, a constraint the
	// server enforces); nil skips RecordErrors.
	Bad func(pos stdlib.Position) stdlib.Record
	// BreakCommit, when not nil, makes the next Checkpoint of a sink
	// writing tg fail after its records were written (an unwritable
	// commit file); undo puts things right again. CheckpointAtomic uses
	// it in every other round, besides cutting contexts short.
	BreakCommit func(t *testing.T, tg *Target) (undo func())
	// Replays says the exactly-once sink writes through at once and
	// drops replays (a JetStream message id, an idempotent key) instead
	// of committing with its positions: what it wrote is visible before
	// Checkpoint, and a failed one leaves records past the positions the
	// sink holds, which a reopened sink writing them again must not
	// double. SinkHeld then does not look before the checkpoint, and
	// CheckpointAtomic checks that the target holds every record up to
	// the held positions, each once, and none not written.
	Replays bool
	// Acks says the source resumes from no position of its own: the
	// server keeps what its Commit did not acknowledge and hands that to
	// the next instance (a queue, a persistent session), as at least once
	// allows. SourceResume then commits the held positions through the
	// source before opening another, which is told of no position; and
	// Reconnect commits what was read before the server restarts.
	Acks bool
	// Restart stops the server and starts it again; nil skips Reconnect.
	Restart func(t *testing.T)
	// Secret returns the attributes of a source and of a sink stage (nil
	// for none) that hold secret as a credential (a password, a DSN's
	// password) and fail to connect: the server refuses it or cannot be
	// reached. Nil skips SecretsAbsent.
	Secret func(t *testing.T, secret string) (source, sink map[string]any)
}

// Target is one case's target: what a source reads and a sink writes.
type Target struct {
	// Pipeline is the pipeline name of the stages' configs (an
	// exactly-once sink may key what it stores by it); Run names one per
	// target when it is empty.
	Pipeline string
	// Source and Sink are the attributes of a source stage reading the
	// target and of a sink stage writing it.
	Source, Sink map[string]any
	// StateDir, when not empty, is the state directory of every stage
	// config of the target, kept across instances as the executor keeps
	// it across runs (a source keeping a position log there); otherwise
	// each config gets a fresh one.
	StateDir string
	// Input is the record type the sink gets (Config.Input), or nil.
	Input *types.Type
	// Schema is the source's declared schema (Config.Schema), or nil.
	Schema *types.Type
	// Produce writes records with these ids into what the source reads,
	// through a plain client.
	Produce func(t *testing.T, ids []int64)
	// Written returns the ids of the records the sink wrote, as a reader
	// of the target sees them (committed ones only), in any order.
	Written func(t *testing.T) []int64
}

// Run runs the contract suite on c, one subtest per case, all but
// Reconnect: a connector's TestServerRestart<System> runs that one.
func Run(t *testing.T, c Connector) {
	cases := []struct {
		name string
		run  func(*testing.T, Connector)
	}{
		{"OpenClose", openClose},
		{"SourceResume", sourceResume},
		{"SinkHeld", sinkHeld},
		{"CheckpointAtomic", checkpointAtomic},
		{"RecordErrors", recordErrors},
		{"SecretsAbsent", secretsAbsent},
	}
	c = named(c)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
}

// named returns c with a Target that names a pipeline per target when the
// connector's does not.
func named(c Connector) Connector {
	target := c.Target
	c.Target = func(t *testing.T) *Target {
		tg := target(t)
		if tg.Pipeline == "" {
			tg.Pipeline = fmt.Sprintf("contract-%08x", rand.Uint32())
		}
		return tg
	}
	return c
}

// Config returns the Config of a one-task stage of spec with attrs,
// checked by spec.Values as the executor checks it.
func Config(t testing.TB, spec *stdlib.Spec, pipeline, stage string, attrs map[string]any, d stdlib.Delivery) stdlib.Config {
	t.Helper()
	a, err := spec.Values(attrs)
	if err != nil {
		t.Fatalf("%s %s attributes: %v", spec.Name, spec.Kind, err)
	}
	return stdlib.Config{Pipeline: pipeline, Stage: stage, Attrs: a, Tasks: 1, Delivery: d,
		StateDir: t.TempDir(), Logger: logger(t, nil)}
}

// OpenSink opens s, just built with error err (which fails t), closes
// it when the test ends, and returns it with the positions it holds: a
// test's sink in one line, s, held := OpenSink(t)(newSink(cfg)).
func OpenSink[S stdlib.Sink](t testing.TB) func(s S, err error) (S, []stdlib.Position) {
	return func(s S, err error) (S, []stdlib.Position) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		held, err := s.Open(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s, held
	}
}

// OpenSource opens s, just built with error err (which fails t), with
// resume, and closes it when the test ends: a test's source in one line,
// src := OpenSource[*source](t, resume)(newSource(cfg)).
func OpenSource[S stdlib.Source](t testing.TB, resume stdlib.Resumer) func(s S, err error) S {
	return func(s S, err error) S {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(t.Context(), resume); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	}
}

// logger returns a logger writing to t's log and, when w is not nil, to w.
func logger(t testing.TB, w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&logWriter{t: t, also: w}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

type logWriter struct {
	t    testing.TB
	also *syncBuffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.also != nil {
		w.also.mu.Lock()
		w.also.b.Write(p)
		w.also.mu.Unlock()
	}
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Resumer stands for the executor's Resumer: Resume returns the
// positions of Held when the identity matches, StoredPositions
// (stdlib.PositionLister) lists those and Listed (the positions sinks
// hold), and Identity tells the identity the source gave a partition.
type Resumer struct {
	Held, Listed []stdlib.Position
	ident        map[string]string
}

// Resume implements stdlib.Resumer.
func (r *Resumer) Resume(partition, identity string) (int64, bool) {
	if r.ident == nil {
		r.ident = map[string]string{}
	}
	r.ident[partition] = identity
	for _, p := range r.Held {
		if p.Partition == partition && stdlib.SameIdentity(p.Identity, identity) {
			return p.Offset, true
		}
	}
	return 0, false
}

// StoredPositions implements stdlib.PositionLister.
func (r *Resumer) StoredPositions() []stdlib.Position {
	return append(slices.Clone(r.Held), r.Listed...)
}

// Identity returns the identity the source resumed partition with.
func (r *Resumer) Identity(partition string) string { return r.ident[partition] }

// Records returns sink records with ids from to to-1, each at position
// Offset id of partition p0 of source "in".
func Records(from, to int64) []stdlib.Record {
	var out []stdlib.Record
	for id := from; id < to; id++ {
		out = append(out, Record(id, stdlib.Position{Source: "in", Partition: "p0", Offset: id}))
	}
	return out
}

// Record returns the record {id, name} at pos.
func Record(id int64, pos stdlib.Position) stdlib.Record {
	return stdlib.Record{Value: map[string]any{"id": id, "name": "n" + strconv.FormatInt(id, 10)}, Partition: -1, Pos: pos}
}

// Type is the type of the records the suite writes.
var Type = types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "name", Type: types.StringType})

// EventType is the record shape of the connectors' benchmarks and bulk
// tests: {id, user, amount, country, event, ts}.
var EventType = types.RecordOf(
	&types.Field{Name: "id", Type: types.IntType},
	&types.Field{Name: "user", Type: types.StringType},
	&types.Field{Name: "amount", Type: types.FloatType},
	&types.Field{Name: "country", Type: types.StringType},
	&types.Field{Name: "event", Type: types.StringType},
	&types.Field{Name: "ts", Type: types.TimestampType},
)

// EventTime is the ts of event 0; event n is n seconds later.
var EventTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Event returns event n of EventType, at position n of "in[p0]".
func Event(n int64) stdlib.Record {
	return stdlib.Record{
		Value: map[string]any{
			"id": n, "user": fmt.Sprintf("u%d", n%100), "amount": float64(n%10000) / 100,
			"country": "NL", "event": "purchase", "ts": EventTime.Add(time.Duration(n) * time.Second),
		},
		Partition: -1,
		Pos:       stdlib.Position{Source: "in", Partition: "p0", Offset: n},
	}
}

// Events returns events from to to-1.
func Events(from, to int64) []stdlib.Record {
	out := make([]stdlib.Record, 0, to-from)
	for n := from; n < to; n++ {
		out = append(out, Event(n))
	}
	return out
}

// ID returns the id field of a record's value.
func ID(t testing.TB, r stdlib.Record) int64 {
	t.Helper()
	m, ok := r.Value.(map[string]any)
	if !ok {
		if row, ok := r.Value.(*stdlib.Row); ok {
			m = row.Map()
		} else {
			t.Fatalf("record %v is not a map: %T", r.Pos, r.Value)
		}
	}
	// An int of any width, a whole float or a numeric string.
	if n, err := strconv.ParseInt(fmt.Sprint(m["id"]), 10, 64); err == nil {
		return n
	}
	t.Fatalf("record %v: id %v (%T) is not an int", r.Pos, m["id"], m["id"])
	return 0
}

// SQLValues returns the rows of records {id, name} with ids for an SQL
// INSERT: "(0, 'n0'), (1, 'n1')".
func SQLValues(ids []int64) string {
	vals := make([]string, len(ids))
	for i, id := range ids {
		vals[i] = fmt.Sprintf("(%d, 'n%d')", id, id)
	}
	return strings.Join(vals, ", ")
}

// RowIDs returns the ids of rows listed as "id=N" (a query of the id
// column as the SQL connectors' tests print rows).
func RowIDs(t testing.TB, rows []string) []int64 {
	t.Helper()
	ids := make([]int64, len(rows))
	for i, r := range rows {
		id, err := strconv.ParseInt(strings.TrimPrefix(r, "id="), 10, 64)
		if err != nil {
			t.Fatalf("row %q: %v", r, err)
		}
		ids[i] = id
	}
	return ids
}

// Seq returns the ids from to to-1.
func Seq(from, to int64) []int64 {
	var out []int64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// SameIDs fails t unless got holds exactly the ids of want, each once.
func SameIDs(t testing.TB, what string, got, want []int64) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: ids %v, want %v", what, g, w)
	}
}

func newSource(t *testing.T, c Connector, tg *Target) stdlib.Source {
	t.Helper()
	cfg := Config(t, c.Source, tg.Pipeline, "in", tg.Source, "")
	cfg.Schema = tg.Schema
	if tg.StateDir != "" {
		cfg.StateDir = tg.StateDir
	}
	src, err := c.Source.NewSource(cfg)
	if err != nil {
		t.Fatalf("new source: %v", err)
	}
	return src
}

func newSink(t *testing.T, c Connector, tg *Target, d stdlib.Delivery) stdlib.Sink {
	t.Helper()
	cfg := Config(t, c.Sink, tg.Pipeline, "out", tg.Sink, d)
	cfg.Input = tg.Input
	if tg.StateDir != "" {
		cfg.StateDir = tg.StateDir
	}
	snk, err := c.Sink.NewSink(cfg)
	if err != nil {
		t.Fatalf("new sink: %v", err)
	}
	return snk
}

// openSink builds and opens a sink, returning what it holds.
func openSink(t *testing.T, c Connector, tg *Target, d stdlib.Delivery) (stdlib.Sink, []stdlib.Position) {
	t.Helper()
	snk := newSink(t, c, tg, d)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	held, err := snk.Open(ctx)
	if err != nil {
		t.Fatalf("open sink: %v", err)
	}
	return snk, held
}

func closeQuietly(c interface{ Close(context.Context) error }) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.Close(ctx)
}

func mustClose(t *testing.T, what string, c interface{ Close(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("%s: close: %v", what, err)
	}
}

// deliveries returns the sink's guarantees the suite checks.
func deliveries(c Connector) []stdlib.Delivery {
	var out []stdlib.Delivery
	for _, d := range c.Sink.Delivery {
		if d != stdlib.AtMostOnce {
			out = append(out, d)
		}
	}
	return out
}

func exactly(c Connector) bool {
	return c.Sink != nil && slices.Contains(c.Sink.Delivery, stdlib.ExactlyOnce)
}

// ReadN reads from src until n records came, failing t on a read error
// or when timeout passes first, and returns what it read: n records or
// more, as a batch may hold more.
func ReadN(t testing.TB, src stdlib.Source, n int, timeout time.Duration) []stdlib.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var out []stdlib.Record
	for len(out) < n {
		recs, err := src.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

// ReadExactly is ReadN failing t unless exactly n records came.
func ReadExactly(t testing.TB, src stdlib.Source, n int, timeout time.Duration) []stdlib.Record {
	t.Helper()
	out := ReadN(t, src, n, timeout)
	if len(out) != n {
		t.Fatalf("read %d records, want %d", len(out), n)
	}
	return out
}

// ReadIDs reads from src until n records arrived (or a bounded source
// ended), then a little longer to catch any extra, and returns the
// records.
func ReadIDs(t *testing.T, src stdlib.Source, n int, timeout time.Duration) []stdlib.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var out []stdlib.Record
	var extra time.Time
	for {
		if len(out) >= n && extra.IsZero() {
			extra = time.Now().Add(300 * time.Millisecond)
		}
		rctx, rcancel := ctx, context.CancelFunc(func() {})
		if !extra.IsZero() {
			rctx, rcancel = context.WithDeadline(ctx, extra)
		}
		recs, err := src.Read(rctx)
		rcancel()
		for _, r := range recs {
			if r.Err != nil {
				t.Fatalf("record %v: %v", r.Pos, r.Err)
			}
		}
		out = append(out, recs...)
		switch {
		case errors.Is(err, stdlib.ErrEndOfInput):
			return out
		case err != nil && !extra.IsZero() && rctx.Err() != nil:
			return out
		case err != nil && ctx.Err() != nil:
			t.Fatalf("read %d of %d records in %v: %v", len(out), n, timeout, err)
		case err != nil:
			t.Fatalf("read after %d of %d records: %v", len(out), n, err)
		}
	}
}

func ids(t testing.TB, recs []stdlib.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = ID(t, r)
	}
	return out
}

func openClose(t *testing.T, c Connector) {
	if c.Source != nil {
		t.Run("source", func(t *testing.T) {
			tg := c.Target(t)
			tg.Produce(t, Seq(0, 3))
			unopened := newSource(t, c, tg)
			mustClose(t, "source never opened", unopened)
			src := newSource(t, c, tg)
			if err := src.Open(t.Context(), &Resumer{}); err != nil {
				t.Fatalf("open source: %v", err)
			}
			ReadIDs(t, src, 3, 30*time.Second)
			mustClose(t, "source", src)
			mustClose(t, "source closed twice", src)
		})
	}
	if c.Sink != nil {
		for _, d := range deliveries(c) {
			t.Run("sink_"+string(d), func(t *testing.T) {
				tg := c.Target(t)
				mustClose(t, "sink never opened", newSink(t, c, tg, d))
				snk, _ := openSink(t, c, tg, d)
				mustClose(t, "sink", snk)
				mustClose(t, "sink closed twice", snk)
			})
		}
	}
}

func sourceResume(t *testing.T, c Connector) {
	if c.Source == nil {
		t.Skip("no source")
	}
	tg := c.Target(t)
	tg.Produce(t, Seq(0, 20))
	res := &Resumer{}
	src := newSource(t, c, tg)
	if err := src.Open(t.Context(), res); err != nil {
		t.Fatalf("open source: %v", err)
	}
	first := ReadIDs(t, src, 20, 30*time.Second)
	SameIDs(t, "first read", ids(t, first), Seq(0, 20))

	// Hold each partition's position of its middle record: a resumed
	// source must read exactly what follows them.
	byPart := map[string][]stdlib.Record{}
	for _, r := range first {
		byPart[r.Pos.Partition] = append(byPart[r.Pos.Partition], r)
	}
	held := &Resumer{}
	var want []int64
	for part, recs := range byPart {
		mid := len(recs) / 2
		p := recs[mid].Pos
		p.Identity = res.Identity(part)
		held.Held = append(held.Held, p)
		for _, r := range recs[mid+1:] {
			want = append(want, ID(t, r))
		}
	}
	if c.Acks {
		// The server keeps the positions: acknowledge up to the held
		// ones, and tell the next instance of none.
		if err := src.Commit(t.Context(), held.Held); err != nil {
			t.Fatalf("commit %v: %v", held.Held, err)
		}
		held = &Resumer{}
	}
	mustClose(t, "source", src)
	tg.Produce(t, Seq(20, 25))
	want = append(want, Seq(20, 25)...)
	src = newSource(t, c, tg)
	if err := src.Open(t.Context(), held); err != nil {
		t.Fatalf("open resumed source: %v", err)
	}
	defer mustClose(t, "source", src)
	got := ReadIDs(t, src, len(want), 30*time.Second)
	SameIDs(t, fmt.Sprintf("resumed after %v", held.Held), ids(t, got), want)
}

func sortPositions(ps []stdlib.Position) []stdlib.Position {
	out := slices.Clone(ps)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source < out[j].Source
		}
		return out[i].Partition < out[j].Partition
	})
	for i := range out {
		out[i].Identity = ""
	}
	return out
}

func samePositions(t *testing.T, what string, got, want []stdlib.Position) {
	t.Helper()
	if g, w := sortPositions(got), sortPositions(want); fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("%s: %v, want %v", what, g, w)
	}
}

func sinkHeld(t *testing.T, c Connector) {
	if !exactly(c) {
		t.Skip("no exactly-once sink")
	}
	for _, acquire := range acquireModes(t, c) {
		t.Run(mode(acquire), func(t *testing.T) { sinkHeldBy(t, c, acquire) })
	}
}

// acquireModes returns false, and true for a sink that is an Acquirer: it
// then holds positions per partition acquired (the executor acquires the
// partitions of a source that hands them over), and the cases check both
// ways of resuming.
func acquireModes(t *testing.T, c Connector) []bool {
	if _, ok := newSink(t, c, c.Target(t), stdlib.ExactlyOnce).(stdlib.Acquirer); ok {
		return []bool{false, true}
	}
	return []bool{false}
}

func mode(acquire bool) string {
	if acquire {
		return "acquired"
	}
	return "opened"
}

// openHeld opens an exactly-once sink and returns what it holds for
// source "in": what Open returns or, with acquire, what Acquire returns
// for partitions.
func openHeld(t *testing.T, c Connector, tg *Target, acquire bool, partitions ...string) (stdlib.Sink, []stdlib.Position) {
	t.Helper()
	snk, held := openSink(t, c, tg, stdlib.ExactlyOnce)
	if !acquire {
		return snk, held
	}
	held, err := snk.(stdlib.Acquirer).Acquire(t.Context(), "in", partitions)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	return snk, held
}

func sinkHeldBy(t *testing.T, c Connector, acquire bool) {
	tg := c.Target(t)
	parts := []string{"p0", "p1", "p2"}
	snk, held := openHeld(t, c, tg, acquire, parts...)
	if len(held) != 0 {
		t.Fatalf("a new target is held at %v", held)
	}
	batch := Records(0, 6)
	for i := range 4 { // partition p1 at offsets 100..103
		batch = append(batch, Record(int64(6+i), stdlib.Position{Source: "in", Partition: "p1", Offset: int64(100 + i)}))
	}
	if err := snk.Write(t.Context(), batch); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := tg.Written(t); len(got) != 0 && !c.Replays {
		t.Fatalf("records %v visible before the checkpoint", got)
	}
	pos := []stdlib.Position{{Source: "in", Partition: "p0", Offset: 5}, {Source: "in", Partition: "p1", Offset: 103}}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos}); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	mustClose(t, "sink", snk)
	SameIDs(t, "written", tg.Written(t), Seq(0, 10))

	snk, held = openHeld(t, c, tg, acquire, parts...)
	samePositions(t, "reopened sink holds", held, pos)
	mustClose(t, "sink", snk)
	if !acquire && slices.Contains(c.Sink.Delivery, stdlib.AtLeastOnce) {
		alo, held := openSink(t, c, tg, stdlib.AtLeastOnce)
		if len(held) != 0 {
			t.Fatalf("an at_least_once sink holds %v", held)
		}
		mustClose(t, "at_least_once sink", alo)
	}
	if _, ok := snk.(stdlib.PositionStore); !ok {
		return
	}
	// What `pipe offsets` sets is what the sink holds next, whether Open
	// or Acquire hands it back.
	ps := newSink(t, c, tg, stdlib.ExactlyOnce).(stdlib.PositionStore)
	stored, err := ps.StoredPositions(t.Context())
	if err != nil {
		t.Fatalf("stored positions: %v", err)
	}
	samePositions(t, "StoredPositions", stored, pos)
	set := []stdlib.Position{{Source: "in", Partition: "p0", Offset: 2}}
	if err := ps.SetPositions(t.Context(), "in", []string{"p0"}, set); err != nil {
		t.Fatalf("set positions: %v", err)
	}
	want := []stdlib.Position{set[0], pos[1]}
	if stored, err = ps.StoredPositions(t.Context()); err != nil {
		t.Fatalf("stored positions: %v", err)
	}
	samePositions(t, "StoredPositions after SetPositions", stored, want)
	snk, held = openHeld(t, c, tg, acquire, parts...)
	samePositions(t, "sink opened after SetPositions holds", held, want)
	mustClose(t, "sink", snk)
	// A partition reset is held no more.
	if err := ps.SetPositions(t.Context(), "in", []string{"p1"}, nil); err != nil {
		t.Fatalf("reset positions: %v", err)
	}
	if stored, err = ps.StoredPositions(t.Context()); err != nil {
		t.Fatalf("stored positions: %v", err)
	}
	samePositions(t, "StoredPositions after a reset", stored, set)
	snk, held = openHeld(t, c, tg, acquire, parts...)
	samePositions(t, "sink opened after a reset holds", held, set)
	mustClose(t, "sink", snk)
}

// checkpointAtomic writes a batch per round and makes the checkpoint
// fail, in most rounds, between the write and the commit: its context
// already cancelled, cut short at a random moment, or (every other round
// when the connector can) its commit broken. The next round's instance
// must find the target holding exactly the records up to the positions it
// holds.
func checkpointAtomic(t *testing.T, c Connector) {
	if !exactly(c) {
		t.Skip("no exactly-once sink")
	}
	for _, acquire := range acquireModes(t, c) {
		t.Run(mode(acquire), func(t *testing.T) { checkpointAtomicBy(t, c, acquire) })
	}
}

func checkpointAtomicBy(t *testing.T, c Connector, acquire bool) {
	tg := c.Target(t)
	const rounds, per = 16, 25
	failed, committed := 0, 0
	written := int64(0) // the ids written so far are below it
	for round := range rounds + 1 {
		snk, held := openHeld(t, c, tg, acquire, "p0")
		next := int64(0)
		for _, p := range held {
			if p.Source != "in" || p.Partition != "p0" {
				t.Fatalf("round %d: sink holds %v, never committed", round, p)
			}
			next = p.Offset + 1
		}
		if c.Replays {
			heldReplayed(t, fmt.Sprintf("round %d: target held at %v", round, held), tg.Written(t), next, written)
		} else {
			SameIDs(t, fmt.Sprintf("round %d: target held at %v", round, held), tg.Written(t), Seq(0, next))
		}
		if round == rounds {
			mustClose(t, "sink", snk)
			break
		}
		if err := snk.Write(t.Context(), Records(next, next+per)); err != nil {
			t.Fatalf("round %d: write: %v", round, err)
		}
		written = max(written, next+per)
		ctx, cancel := context.WithCancel(t.Context())
		var undo func()
		switch {
		case round%4 == 3:
			// A clean checkpoint now and then, so that there is
			// something to lose.
		case round%2 == 1 && c.BreakCommit != nil:
			undo = c.BreakCommit(t, tg)
		case round%4 == 0:
			cancel()
		default:
			ctx, cancel = context.WithTimeout(t.Context(), time.Duration(rand.IntN(10000))*time.Microsecond)
		}
		err := snk.Checkpoint(ctx, stdlib.Checkpoint{ID: uint64(round + 1),
			Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: next + per - 1}}})
		cancel()
		if undo != nil {
			undo()
		}
		if err != nil {
			failed++
			t.Logf("round %d: checkpoint failed: %v", round, err)
		} else {
			committed++
		}
		closeQuietly(snk)
	}
	t.Logf("%d checkpoints failed, %d committed", failed, committed)
	if failed == 0 {
		t.Fatal("no checkpoint failed: no failure was injected")
	}
}

// heldReplayed fails t unless got holds each id below next once, and
// otherwise only ids below written, each once: what a sink that drops
// replays may hold past its positions.
func heldReplayed(t *testing.T, what string, got []int64, next, written int64) {
	t.Helper()
	seen := map[int64]int{}
	for _, id := range got {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 || id < 0 || id >= written {
			t.Fatalf("%s: id %d there %d times (written below %d)", what, id, n, written)
		}
	}
	for id := range next {
		if seen[id] == 0 {
			t.Fatalf("%s: id %d missing", what, id)
		}
	}
}

func recordErrors(t *testing.T, c Connector) {
	if c.Sink == nil || c.Bad == nil {
		t.Skip("no sink, or no record it rejects")
	}
	for _, d := range deliveries(c) {
		t.Run(string(d), func(t *testing.T) {
			tg := c.Target(t)
			snk, _ := openSink(t, c, tg, d)
			defer mustClose(t, "sink", snk)
			batch := Records(0, 10)
			batch[4] = c.Bad(batch[4].Pos)
			err := snk.Write(t.Context(), batch)
			var rerrs stdlib.RecordErrors
			if !errors.As(err, &rerrs) {
				t.Fatalf("write of a batch with a bad record = %v, want RecordErrors", err)
			}
			if len(rerrs) != 1 || rerrs[0].Index != 4 {
				t.Fatalf("record errors %v, want record 4 (position %v) only", rerrs, batch[4].Pos)
			}
			t.Logf("rejected: %v", rerrs[0])
			if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1,
				Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: 9}}}); err != nil {
				t.Fatalf("checkpoint: %v", err)
			}
			SameIDs(t, "written", tg.Written(t), []int64{0, 1, 2, 3, 5, 6, 7, 8, 9})
		})
	}
}

// Reconnect restarts the server (Connector.Restart) while a source reads
// and a sink writes, the sink with records written and not committed: both
// carry on, the source missing and repeating nothing, and the sink
// committing every record (once, exactly_once). It runs with
// PIPE_KILLTEST=1 only, as it disturbs the server.
func Reconnect(t *testing.T, c Connector) {
	if c.Restart == nil {
		t.Skip("the connector cannot restart its server")
	}
	if os.Getenv("PIPE_KILLTEST") != "1" {
		t.Skip("set PIPE_KILLTEST=1 to restart the server")
	}
	c = named(c)
	tg, out := c.Target(t), c.Target(t) // the source's and the sink's
	var src stdlib.Source
	if c.Source != nil {
		tg.Produce(t, Seq(0, 5))
		src = newSource(t, c, tg)
		if err := src.Open(t.Context(), &Resumer{}); err != nil {
			t.Fatalf("open source: %v", err)
		}
		defer closeQuietly(src)
		read := ReadIDs(t, src, 5, 30*time.Second)
		SameIDs(t, "read before the restart", ids(t, read), Seq(0, 5))
		if c.Acks {
			last := map[string]stdlib.Position{}
			for _, r := range read {
				last[r.Pos.Partition] = r.Pos
			}
			if err := src.Commit(t.Context(), slices.Collect(maps.Values(last))); err != nil {
				t.Fatalf("commit: %v", err)
			}
		}
	}
	var snk stdlib.Sink
	d := stdlib.AtLeastOnce
	if c.Sink != nil {
		d = deliveries(c)[0]
		snk, _ = openSink(t, c, out, d)
		defer closeQuietly(snk)
		if err := snk.Write(t.Context(), Records(1000, 1005)); err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1,
			Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: 1004}}}); err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		// Written, not committed: lost with the connection.
		if err := snk.Write(t.Context(), Records(1005, 1010)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	c.Restart(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if src != nil {
		tg.Produce(t, Seq(5, 10))
		SameIDs(t, "read after the restart", ids(t, ReadIDs(t, src, 5, 2*time.Minute)), Seq(5, 10))
	}
	if snk != nil {
		if err := snk.Write(ctx, Records(1010, 1015)); err != nil {
			t.Fatalf("write after the restart: %v", err)
		}
		if err := snk.Checkpoint(ctx, stdlib.Checkpoint{ID: 2,
			Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: 1014}}}); err != nil {
			t.Fatalf("checkpoint after the restart: %v", err)
		}
		written := out.Written(t)
		if d != stdlib.ExactlyOnce {
			slices.Sort(written)
			written = slices.Compact(written)
		}
		SameIDs(t, "written across the restart", written, Seq(1000, 1015))
	}
}

func secretsAbsent(t *testing.T, c Connector) {
	if c.Secret == nil {
		t.Skip("no secret attributes")
	}
	secret := fmt.Sprintf("Zq7Kx%08d", rand.IntN(1e8))
	srcAttrs, snkAttrs := c.Secret(t, secret)
	check := func(t *testing.T, what string, errs []error, logs *syncBuffer) {
		t.Helper()
		n := 0
		for _, err := range errs {
			if err == nil {
				continue
			}
			n++
			t.Logf("%s: %v", what, err)
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error shows the secret: %v", what, err)
			}
		}
		if n == 0 {
			t.Fatalf("%s: no error with a wrong credential", what)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("%s: the log shows the secret:\n%s", what, logs)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if srcAttrs != nil && c.Source != nil {
		logs := &syncBuffer{}
		cfg := Config(t, c.Source, "secret", "in", srcAttrs, "")
		cfg.Logger = logger(t, logs)
		var errs []error
		src, err := c.Source.NewSource(cfg)
		errs = append(errs, err)
		if err == nil {
			err = src.Open(ctx, &Resumer{})
			errs = append(errs, err)
			if err == nil {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err = src.Read(rctx)
				rcancel()
				errs = append(errs, err)
			}
			errs = append(errs, src.Close(ctx))
		}
		check(t, "source", errs, logs)
	}
	if snkAttrs != nil && c.Sink != nil {
		for _, d := range deliveries(c) {
			logs := &syncBuffer{}
			cfg := Config(t, c.Sink, "secret", "out", snkAttrs, d)
			cfg.Input, cfg.Logger = Type, logger(t, logs)
			var errs []error
			snk, err := c.Sink.NewSink(cfg)
			errs = append(errs, err)
			if err == nil {
				_, err = snk.Open(ctx)
				errs = append(errs, err)
				if err == nil {
					err = snk.Write(ctx, Records(0, 3))
					errs = append(errs, err)
					errs = append(errs, snk.Checkpoint(ctx, stdlib.Checkpoint{ID: 1,
						Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: 2}}}))
				}
				errs = append(errs, snk.Close(ctx))
			}
			check(t, "sink "+string(d), errs, logs)
		}
	}
}

// WantLag fails t unless src reports exactly want (nil: no lag known).
func WantLag(t testing.TB, src stdlib.Lagger, want ...stdlib.Lag) {
	t.Helper()
	if got := src.Lag(t.Context()); !slices.Equal(got, want) {
		t.Fatalf("lag %+v, want %+v", got, want)
	}
}

// Stage returns the text of a stage of a pipeline, `kind name: component {`
// with one attribute (or block) a line as given, for tests that compile
// many variants of one stage.
func Stage(kind, name, component string, attrs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s {\n", kind, name, component)
	for _, a := range attrs {
		b.WriteString("  " + a + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}
