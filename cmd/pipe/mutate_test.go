package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckMutatedExamples runs `pipe check` on random byte mutations of
// every example: it must always answer with exit 0 or 1 (never 2, the code
// of a usage or internal failure), print no Go panic, and return.
func TestCheckMutatedExamples(t *testing.T) {
	examples, err := filepath.Glob("../../examples/*.pipe")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	dir := t.TempDir()
	// Imports resolve beside the mutated file, as beside the original.
	if err := os.CopyFS(filepath.Join(dir, "lib"), os.DirFS("../../examples/lib")); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	alphabet := []byte("{}[]()<>:=,.?\"`$-_ \n\tabz019#/*\\\x00\xff")
	perFile := 60
	if testing.Short() {
		perFile = 10
	}
	for _, ex := range examples {
		src, err := os.ReadFile(ex)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < perFile; i++ {
			m := append([]byte(nil), src...)
			for k := 0; k < 1+rng.IntN(6); k++ {
				pos := rng.IntN(len(m))
				switch rng.IntN(3) {
				case 0:
					m[pos] = alphabet[rng.IntN(len(alphabet))]
				case 1:
					m = append(m[:pos], m[min(len(m), pos+1+rng.IntN(12)):]...)
				default:
					m = append(m[:pos], append([]byte{alphabet[rng.IntN(len(alphabet))]}, m[pos:]...)...)
				}
			}
			path := filepath.Join(dir, "mutant.pipe")
			if err := os.WriteFile(path, m, 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			done := make(chan int, 1)
			go func() { done <- run([]string{"check", path}, nil, &stdout, &stderr) }()
			var code int
			select {
			case code = <-done:
			case <-time.After(time.Minute):
				t.Fatalf("%s mutation %d: pipe check did not return\n--- input ---\n%s", ex, i, m)
			}
			if code != exitOK && code != exitFindings || strings.Contains(stderr.String(), "panic") || strings.Contains(stdout.String(), "PIPE901") {
				t.Fatalf("%s mutation %d: exit %d\nstdout: %s\nstderr: %s\n--- input ---\n%s", ex, i, code, stdout.String(), stderr.String(), m)
			}
		}
	}
}
