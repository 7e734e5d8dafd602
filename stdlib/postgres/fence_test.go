package postgres

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pipe.dev/pipe/stdlib"
)

// TestSinkFencesEarlierRuns: a second run of the same instance takes the
// next epoch; the first run's commit is then refused and rolls back; a
// run of another instance fences nobody; taking an epoch waits for a
// commit of the current one in flight.
func TestSinkFencesEarlierRuns(t *testing.T) {
	e := newPG(t)
	ctx := t.Context()
	cfg := e.sinkConfig(map[string]any{"table": e.table("events"), "create_table": true}, eventType, stdlib.ExactlyOnce)
	cfg.Owner = "w1"
	a, _ := e.openSink(cfg)
	if err := a.Write(ctx, events(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := a.Checkpoint(ctx, stdlib.Checkpoint{ID: 1, Positions: pos(2)}); err != nil {
		t.Fatal(err)
	}
	cfg.Owner = "w2"
	b, held := e.openSink(cfg)
	if !reflect.DeepEqual(held, pos(2)) {
		t.Fatalf("second run holds %v, want %v", held, pos(2))
	}
	if err := a.Write(ctx, events(3, 5)); err != nil {
		t.Fatal(err)
	}
	err := a.Checkpoint(ctx, stdlib.Checkpoint{ID: 2, Positions: pos(4)})
	if !errors.Is(err, errFenced) {
		t.Fatalf("the fenced run's checkpoint: %v, want it refused as fenced", err)
	}
	if n := e.count(e.table("events")); n != 2 {
		t.Fatalf("%d rows after the fenced commit, want 2", n)
	}
	if err := b.Write(ctx, events(3, 5)); err != nil {
		t.Fatal(err)
	}
	if err := b.Checkpoint(ctx, stdlib.Checkpoint{ID: 2, Positions: pos(4)}); err != nil {
		t.Fatal(err)
	}
	// Instance 1 has epochs of its own.
	other := cfg
	other.Instance = 1
	c, _ := e.openSink(other)
	if err := c.Checkpoint(ctx, stdlib.Checkpoint{ID: 1, Positions: pos(4)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, events(5, 6)); err != nil {
		t.Fatal(err)
	}
	if err := b.Checkpoint(ctx, stdlib.Checkpoint{ID: 3, Positions: pos(5)}); err != nil {
		t.Fatalf("instance 1 fenced instance 0: %v", err)
	}
	fences := e.table("pipe_offsets_fences")
	got := e.rows(`SELECT instance, epoch, owner, fenced IS NOT NULL AS fenced, commits FROM ` + fences + ` ORDER BY instance, epoch`)
	want := []string{
		"instance=0 epoch=1 owner=w1 fenced=true commits=1",
		"instance=0 epoch=2 owner=w2 fenced=false commits=2",
		"instance=1 epoch=1 owner=w2 fenced=false commits=1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A commit of epoch 2 in flight (its row updated, not yet committed)
	// holds back the next run until it ends; then it is before the fence.
	conn, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.checkEpoch(ctx, tx); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		s, err := newSink(cfg)
		if err == nil {
			_, err = s.Open(ctx)
			s.Close(ctx)
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("the next run took its epoch while a commit of the current one was in flight (%v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	got = e.rows(`SELECT epoch, commits, last_commit < fenced AS before FROM ` + fences + ` WHERE instance = 0 AND epoch = 2`)
	if want := []string{"epoch=2 commits=3 before=true"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("epoch 2 after the next run took over: %v, want %v", got, want)
	}
}
