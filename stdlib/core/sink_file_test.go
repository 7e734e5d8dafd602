package core

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"pipe.dev/pipe/stdlib"
)

// TestFileSinkOutputChanged: an output file missing, shorter or different
// from what its state file says was committed fails the sink at open, with
// an error naming both files and how to start afresh (for an exactly-once
// sink, deleting the state file is enough: its partitions are read again),
// and nothing is written; deleting the state file starts a new output
// holding nothing.
func TestFileSinkOutputChanged(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	p := filepath.Join(dir, "out.jsonl")
	state := filepath.Join(dir, ".out.jsonl.pipe-sink.json")
	cfg := sinkConfig(p, stdlib.ExactlyOnce, nil)
	cfg.StateDir = filepath.Join(dir, "state")
	open := func() ([]stdlib.Position, error) {
		s, err := newFileSink(cfg)
		must(t, err)
		defer s.Close(ctx)
		return s.Open(ctx)
	}
	s, err := newFileSink(cfg)
	must(t, err)
	_, err = s.Open(ctx)
	must(t, err)
	must(t, s.Write(ctx, recs(0, 3, "src", "a")))
	must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "src", Partition: "a", Offset: 2, Identity: "one"}}}))
	s.Close(ctx)
	committed, err := os.ReadFile(p)
	must(t, err)

	for _, tc := range []struct {
		name, what string
		change     func()
	}{
		{"missing", "is missing", func() { must(t, os.Remove(p)) }},
		{"shorter", "has 8 bytes", func() { writeFile(t, p, string(committed[:8])) }},
		{"replaced", "does not hold what was written to it", func() { writeFile(t, p, strings.ReplaceAll(string(committed), "1", "7")) }},
	} {
		tc.change()
		before, _ := os.ReadFile(p)
		_, err := open()
		if err == nil || !strings.Contains(err.Error(), p+" "+tc.what) || !strings.Contains(err.Error(), "delete "+state+" (the sink then holds nothing") || strings.Contains(err.Error(), cfg.StateDir) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if after, _ := os.ReadFile(p); string(after) != string(before) {
			t.Errorf("%s: the sink changed the file to %q", tc.name, after)
		}
		writeFile(t, p, string(committed))
	}
	// An at-least-once sink holding nothing gets only what the sources read
	// next: starting afresh takes the state directory too.
	must(t, os.Remove(p))
	least := sinkConfig(p, stdlib.AtLeastOnce, nil)
	least.StateDir = cfg.StateDir
	s, err = newFileSink(least)
	must(t, err)
	_, err = s.Open(ctx)
	s.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "delete "+state+" and the pipeline's state directory "+cfg.StateDir) {
		t.Errorf("at least once: %v", err)
	}
	writeFile(t, p, string(committed))
	// Longer (uncommitted data): truncated back, positions held.
	writeFile(t, p, string(committed)+`{"i":3}`+"\n")
	held, err := open()
	if err != nil || len(held) != 1 || held[0].Identity != "one" {
		t.Fatalf("held %v, %v", held, err)
	}
	if b, _ := os.ReadFile(p); string(b) != string(committed) {
		t.Fatalf("after open %q", b)
	}
	// Without its state file the output starts afresh, holding nothing.
	must(t, os.Remove(p))
	must(t, os.Remove(state))
	if held, err := open(); err != nil || len(held) != 0 {
		t.Fatalf("held %v, %v", held, err)
	}
	if b, err := os.ReadFile(p); err != nil || len(b) != 0 {
		t.Fatalf("new output %q, %v", b, err)
	}
	// A state file written before fingerprints (version 1): its file is
	// checked by size.
	writeFile(t, state, `{"version":1,"seq":0,"file":"out.jsonl","size":8,"positions":[{"source":"src","partition":"a","offset":0}]}`)
	if _, err := open(); err == nil || !strings.Contains(err.Error(), "has 0 bytes") {
		t.Fatalf("version 1, file shorter: %v", err)
	}
	writeFile(t, p, string(committed))
	if held, err := open(); err != nil || len(held) != 1 {
		t.Fatalf("version 1: held %v, %v", held, err)
	}
	if b, _ := os.ReadFile(p); string(b) != string(committed[:8]) {
		t.Fatalf("version 1: file %q", b)
	}
}

// TestFileSinkPositionStore: the positions every task's state file holds,
// with their identities, are listed and replaced without touching the
// output; a position of another identity replaces the one held.
func TestFileSinkPositionStore(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	p := filepath.Join(dir, "out.jsonl")
	cfgOf := func(task int) stdlib.Config {
		cfg := sinkConfig(p, stdlib.ExactlyOnce, nil)
		cfg.Task, cfg.Tasks = task, 2
		return cfg
	}
	for task := range 2 {
		s, err := newFileSink(cfgOf(task))
		must(t, err)
		_, err = s.Open(ctx)
		must(t, err)
		must(t, s.Write(ctx, recs(0, 2, "src", "a")))
		part := []string{"a", "b"}[task]
		must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "src", Partition: part, Offset: 7, Identity: "x"}, {Source: "other", Partition: "o", Offset: 1}}}))
		// A new incarnation of the partition, at a lower offset.
		must(t, s.Checkpoint(ctx, stdlib.Checkpoint{ID: 2, Positions: []stdlib.Position{{Source: "src", Partition: part, Offset: 3, Identity: "y"}}}))
		s.Close(ctx)
	}
	outputs := func() string {
		a, _ := os.ReadFile(filepath.Join(dir, "out-t0.jsonl"))
		b, _ := os.ReadFile(filepath.Join(dir, "out-t1.jsonl"))
		return string(a) + string(b)
	}
	before := outputs()
	s, err := newFileSink(cfgOf(0))
	must(t, err)
	var ps stdlib.PositionStore = s
	got, err := ps.StoredPositions(ctx)
	must(t, err)
	want := []stdlib.Position{
		{Source: "other", Partition: "o", Offset: 1}, {Source: "src", Partition: "a", Offset: 3, Identity: "y"},
		{Source: "other", Partition: "o", Offset: 1}, {Source: "src", Partition: "b", Offset: 3, Identity: "y"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	must(t, ps.SetPositions(ctx, "src", []string{"a"}, []stdlib.Position{{Source: "src", Partition: "a", Offset: 1, Identity: "z"}}))
	must(t, ps.SetPositions(ctx, "other", nil, nil))
	got, err = ps.StoredPositions(ctx)
	must(t, err)
	want = []stdlib.Position{
		{Source: "src", Partition: "a", Offset: 1, Identity: "z"},
		{Source: "src", Partition: "a", Offset: 1, Identity: "z"}, {Source: "src", Partition: "b", Offset: 3, Identity: "y"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after set %v, want %v", got, want)
	}
	if outputs() != before {
		t.Fatal("the output changed")
	}
	// A task opening now holds what was set.
	s1, err := newFileSink(cfgOf(1))
	must(t, err)
	held, err := s1.Open(ctx)
	must(t, err)
	s1.Close(ctx)
	b, _ := json.Marshal(held)
	if string(b) != `[{"source":"src","partition":"a","offset":1,"identity":"z"},{"source":"src","partition":"b","offset":3,"identity":"y"}]` {
		t.Fatalf("held %s", b)
	}
}
