package spec

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang/ast"
)

// tokenNames names the lexical tokens the grammar refers to. Only the names
// matter here: the grammar is printed, never run.
type tokenNames struct{}

func (tokenNames) Symbols() map[string]lexer.TokenType {
	names := []string{"Ident", "Int", "Float", "Duration", "Size", "String", "RawString", "Expr", "Comment", "Whitespace", "Punct"}
	m := map[string]lexer.TokenType{"EOF": lexer.EOF}
	for i, n := range names {
		m[n] = lexer.TokenType(i + 1)
	}
	return m
}

func (tokenNames) Lex(string, io.Reader) (lexer.Lexer, error) {
	return nil, errors.New("the documentation grammar does not lex")
}

// TestSpecGrammar rebuilds the grammar from the lang/ast node types and
// checks that spec.md §3.1 prints it exactly.
func TestSpecGrammar(t *testing.T) {
	g, err := participle.Build[ast.File](participle.Lexer(tokenNames{}), participle.Elide("Comment", "Whitespace"))
	if err != nil {
		t.Fatalf("building the grammar of lang/ast: %v", err)
	}
	_, blocks := readSpec(t)
	for _, b := range blocks {
		if b.info == "ebnf participle" {
			if got, want := strings.TrimSpace(b.src), strings.TrimSpace(g.String()); got != want {
				t.Errorf("spec.md:%d: the grammar differs from lang/ast; replace the block with:\n%s", b.line, want)
			}
			return
		}
	}
	t.Fatal("spec.md has no ```ebnf participle block")
}
