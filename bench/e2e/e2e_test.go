// Package e2e runs the benchmark pipelines in process, end to end, on small
// inputs.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/bench/gen"
	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	_ "pipe.dev/pipe/stdlib/core"
)

// TestFileMapFileRuns runs file_map_file.pipe end to end on a small input
// and compares its output with the benchmark transform done by hand.
func TestFileMapFileRuns(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	var input bytes.Buffer
	if err := gen.Write(&input, 5000, 3); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, input.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PIPE_IN", in)
	t.Setenv("PIPE_OUT", out)
	src, err := os.ReadFile("../../examples/bench/file_map_file.pipe")
	if err != nil {
		t.Fatal(err)
	}
	prog, diags := compiler.Compile(&compiler.Config{}, "file_map_file.pipe", src)
	if prog == nil {
		t.Fatalf("compile: %v", diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := exec.Run(ctx, p, &exec.Config{StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(input.String()), "\n") {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if gen.Transform(m) {
			b, _ := json.Marshal(m)
			want = append(want, string(b))
		}
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d output records, want %d", len(lines), len(want))
	}
	for i, l := range lines {
		c, err := gen.Canonical([]byte(l))
		if err != nil || c != want[i] {
			t.Fatalf("record %d: got %s (%v), want %s", i+1, l, err, want[i])
		}
	}
}
