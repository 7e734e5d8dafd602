package compiler

import (
	"math/rand/v2"
	"os"
	"testing"

	"pipe.dev/pipe/lang"
)

// TestMutationsNeverPanic compiles random byte mutations of the golden
// pipeline: every result must be diagnostics, never an internal error, and
// every span must lie inside its file.
func TestMutationsNeverPanic(t *testing.T) {
	src, err := os.ReadFile("testdata/golden.pipe")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("{}[]()<>:=,.?\"`$-_ \nabz019\x00")
	n := 400
	if testing.Short() {
		n = 50
	}
	for i := 0; i < n; i++ {
		m := append([]byte(nil), src...)
		for k := 0; k < 1+rng.IntN(4); k++ {
			pos := rng.IntN(len(m))
			switch rng.IntN(3) {
			case 0:
				m[pos] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				m = append(m[:pos], m[min(len(m), pos+1+rng.IntN(8)):]...)
			default:
				m = append(m[:pos], append([]byte{alphabet[rng.IntN(len(alphabet))]}, m[pos:]...)...)
			}
		}
		_, diags := Compile(testConfig(), "golden.pipe", m)
		for _, d := range diags {
			if d.Code == lang.Internal {
				t.Fatalf("mutation %d: %v\n%s\n--- input ---\n%s", i, d.Message, d.Detail, m)
			}
			if d.Span.File == "golden.pipe" && (d.Span.End.Offset > len(m) || d.Span.Start.Offset > d.Span.End.Offset) {
				t.Fatalf("mutation %d: span %v outside the file: %v", i, d.Span, d)
			}
		}
	}
}
