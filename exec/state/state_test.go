package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Load()
	if err != nil || cp != nil {
		t.Fatalf("empty store: got %v, %v", cp, err)
	}
	want := Checkpoint{ID: 3, Positions: []stdlib.Position{
		{Source: "b", Partition: "p1", Offset: 9},
		{Source: "a", Partition: "x", Offset: 4},
	}}
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := reopen(t, dir)
	if got.ID != 3 || len(got.Positions) != 2 || got.Positions[0].Source != "a" {
		t.Fatalf("got %+v", got)
	}
	if p, ok := got.Lookup("b", "p1"); !ok || p.Offset != 9 {
		t.Fatalf("Lookup(b, p1) = %v, %v", p, ok)
	}
	if _, ok := got.Lookup("b", "p2"); ok {
		t.Fatal("Lookup(b, p2) found")
	}
}

// TestCrashLeavesPrevious simulates a crash in the middle of a Save: a
// partial temporary file next to the last good checkpoint.
func TestCrashLeavesPrevious(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	good := Checkpoint{ID: 7, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Positions: []stdlib.Position{{Source: "s", Partition: "0", Offset: 70}}}
	if err := s.Save(good); err != nil {
		t.Fatal(err)
	}
	s.Close()
	partial := filepath.Join(dir, tempPrefix+"12345")
	if err := os.WriteFile(partial, []byte(`{"version":1,"id":8,"posi`), 0o644); err != nil {
		t.Fatal(err)
	}
	got := reopen(t, dir)
	if !reflect.DeepEqual(*got, good) {
		t.Fatalf("got %+v, want %+v", got, good)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("partial file not removed: %v", err)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fileName), []byte("{nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err == nil {
		t.Fatal("corrupt checkpoint loaded without error")
	}
}

func TestOverwrite(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		if err := s.Save(Checkpoint{ID: i, Positions: []stdlib.Position{{Source: "s", Partition: "0", Offset: int64(i * 10)}}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 5 || got.Positions[0].Offset != 50 {
		t.Fatalf("got %+v", got)
	}
	entries, _ := os.ReadDir(s.Dir())
	if len(entries) != 2 {
		t.Fatalf("store holds %d files, want the checkpoint and the lock", len(entries))
	}
}

// TestLock: a second store on a directory fails, naming the holder, until
// the first is closed.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

// reopen opens the store in dir again and loads its last checkpoint.
func reopen(t *testing.T, dir string) *Checkpoint {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return got
}
