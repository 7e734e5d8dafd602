package spec

import (
	"strings"
	"testing"

	"pipe.dev/pipe/lang/parser"
)

// TestSpecGrammar checks that spec.md §3.1 prints exactly the grammar the
// parser builds from the lang/ast node types.
func TestSpecGrammar(t *testing.T) {
	want := strings.TrimSpace(parser.Grammar())
	_, blocks := readSpec(t)
	for _, b := range blocks {
		if b.info == "ebnf participle" {
			if got := strings.TrimSpace(b.src); got != want {
				t.Errorf("spec.md:%d: the grammar differs from lang/ast; replace the block with:\n%s", b.line, want)
			}
			return
		}
	}
	t.Fatal("spec.md has no ```ebnf participle block")
}
