// Package e2e runs the benchmark pipelines in process, end to end, on small
// inputs.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/bench/gen"
	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	_ "pipe.dev/pipe/stdlib/core"
)

// runFile compiles and runs a benchmark pipeline with the garbage
// collector settings of pipe run.
func runFile(tb testing.TB, name, stateDir string) {
	tb.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "bench", name))
	if err != nil {
		tb.Fatal(err)
	}
	prog, diags := compiler.Compile(&compiler.Config{}, name, src)
	if prog == nil {
		tb.Fatalf("compile: %v", diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := exec.Run(ctx, p, &exec.Config{StateDir: stateDir, MemoryLimit: 64 << 20}); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkFileMapFile runs file_map_file.pipe over 200,000 records per
// iteration (for profiling: go test -bench . -cpuprofile cpu.out).
func BenchmarkFileMapFile(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	const records = 200000
	if err := gen.Write(f, records, 3); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.Setenv("PIPE_IN", in)
	n := 0
	for b.Loop() {
		run := filepath.Join(dir, strconv.Itoa(n))
		b.Setenv("PIPE_OUT", filepath.Join(run, "out.jsonl"))
		runFile(b, "file_map_file.pipe", filepath.Join(run, "state"))
		n++
	}
	b.ReportMetric(float64(n*records)/b.Elapsed().Seconds(), "records/s")
}

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
	runFile(t, "file_map_file.pipe", filepath.Join(dir, "state"))
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

// BenchmarkGenMapDiscard runs gen_map_discard.pipe over 1,000,000 records
// per iteration.
func BenchmarkGenMapDiscard(b *testing.B) {
	const records = 1000000
	b.Setenv("N", strconv.Itoa(records))
	dir := b.TempDir()
	n := 0
	for b.Loop() {
		runFile(b, "gen_map_discard.pipe", filepath.Join(dir, strconv.Itoa(n)))
		n++
	}
	b.ReportMetric(float64(n*records)/b.Elapsed().Seconds(), "records/s")
}
