package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/lang/parser"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/all"
)

// TestGenerateClean checks that generated files compile without a single
// diagnostic, warnings included, and hold exactly n stages.
func TestGenerateClean(t *testing.T) {
	for _, n := range []int{10, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			src, err := generate(n)
			if err != nil {
				t.Fatal(err)
			}
			prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "gen.pipe", src)
			if len(diags) > 0 {
				t.Fatalf("diagnostics:\n%s", diags.Error())
			}
			if len(prog.Stages) != n {
				t.Errorf("%d stages, want %d", len(prog.Stages), n)
			}
			// A block has nine flow edges and two dead-letter edges.
			if want := n / blockStages * 11; len(prog.Edges) != want {
				t.Errorf("%d edges, want %d", len(prog.Edges), want)
			}
		})
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, n := range []int{0, -10, 15} {
		if _, err := generate(n); err == nil {
			t.Errorf("generate(%d) succeeded", n)
		}
	}
}

func TestRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "g.pipe")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-n", "30", "-o", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := generate(30)
	if !bytes.Equal(got, want) {
		t.Error("written file differs from generate(30)")
	}
	if code := run([]string{"-n", "7"}, &stdout, &stderr); code != 2 {
		t.Errorf("-n 7: exit %d, want 2", code)
	}
}

// The benchmarks split `pipe check` into its phases on generated files:
// parsing alone, checking an already parsed file, and both.
var sizes = []int{100, 1000, 10000}

func BenchmarkParse(b *testing.B) {
	for _, n := range sizes {
		src, _ := generate(n)
		b.Run(fmt.Sprintf("stages=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if _, diags := parser.ParseFile("gen.pipe", src); diags.HasErrors() {
					b.Fatal(diags)
				}
			}
		})
	}
}

func BenchmarkCompileFile(b *testing.B) {
	for _, n := range sizes {
		src, _ := generate(n)
		f, diags := parser.ParseFile("gen.pipe", src)
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		b.Run(fmt.Sprintf("stages=%d", n), func(b *testing.B) {
			cfg := &compiler.Config{Registry: stdlib.Default}
			for b.Loop() {
				if prog, diags := compiler.CompileFile(cfg, f, src); prog == nil {
					b.Fatal(diags)
				}
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, n := range sizes {
		src, _ := generate(n)
		b.Run(fmt.Sprintf("stages=%d", n), func(b *testing.B) {
			cfg := &compiler.Config{Registry: stdlib.Default}
			for b.Loop() {
				if prog, diags := compiler.Compile(cfg, "gen.pipe", src); prog == nil {
					b.Fatal(diags)
				}
			}
		})
	}
}
