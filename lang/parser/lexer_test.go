package parser

import (
	"strings"
	"testing"

	"github.com/alecthomas/participle/v2/lexer"
)

var typeNames = map[lexer.TokenType]string{}

func init() {
	for name, t := range symbols {
		typeNames[t] = name
	}
}

// tokens renders the significant tokens of src as "Type:value" words.
func tokens(src string) string {
	toks, diags := lex("t.pipe", []byte(src))
	var out []string
	for _, t := range toks {
		switch t.Type {
		case tokWhitespace, lexer.EOF:
			continue
		case tokPunct, tokIdent:
			out = append(out, t.Value)
		default:
			out = append(out, typeNames[t.Type]+":"+t.Value)
		}
	}
	s := strings.Join(out, " ")
	if len(diags) > 0 {
		s += " ! " + diags.Error()
	}
	return s
}

func TestLexer(t *testing.T) {
	tests := []struct{ src, want string }{
		{"a := b + c", "a := Expr:b + c"},
		{"a := b   // note", "a := Expr:b Comment:// note"},
		{"a := b /* note */  ", "a := Expr:b Comment:/* note */"},
		{"a := b /* in */ + c", "a := Expr:b /* in */ + c"},
		{"a := f(x, // one\n  y)\nz = 1", "a := Expr:f(x, // one\n  y) z = Int:1"},
		{"{ where x > 1 }", "{ where Expr:x > 1 }"},
		{"where x > (1) } y", "where Expr:x > (1) } y"},
		{"where s == \")\" && t == '}' && u == `]`", "where Expr:s == \")\" && t == '}' && u == `]`"},
		{"when = 1", "when = Int:1"},
		{"a.when := 2", "a . when := Expr:2"},
		{"{ where: 1, when, x }", "{ where : Int:1 , when , x }"},
		{"where -> b", "where -> b"},
		{"case a when b", "case a when Expr:b"},
		{"x := {a: [1, (2)]}", "x := Expr:{a: [1, (2)]}"},
		{"x := if a { 1 } else {\n  2\n}\ny = 1", "x := Expr:if a { 1 } else {\n  2\n} y = Int:1"},
		{"a -> b.c -> [d, e]", "a -> b . c -> [ d , e ]"},
		{"t = 1m30s s = 10MiB f = 1.5 g = -2 h = 1.5KB i = 2.5e-3", "t = Duration:1m30s s = Size:10MiB f = Float:1.5 g = - Int:2 h = Size:1.5KB i = Float:2.5e-3"},
		{"x = \"a\\\"b\" y = `r\nr`", "x = String:\"a\\\"b\" y = RawString:`r\nr`"},
		{"list<map<string, int>>?", "list < map < string , int > > ?"},
		{"a = 5 s", "a = Duration:5s ! t.pipe:1:5: error PIPE003: malformed literal \"5 s\": write \"5s\" without a space"},
		{"a = 5\ns = 1", "a = Int:5 s = Int:1"},
		{"a = 5 m = 1", "a = Int:5 m = Int:1"},
		{"where", "where Expr: ! t.pipe:1:1: error PIPE001: expected an expression after \"where\""},
		{"where (a\n", "where Expr:(a ! t.pipe:1:7: error PIPE002: unclosed \"(\": missing \")\""},
		{"a: where\n}", "a : where }"},
	}
	for _, tt := range tests {
		if got := tokens(tt.src); got != tt.want {
			t.Errorf("lex(%q)\n got %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

// TestLexerPositions checks offsets, lines and rune columns of tokens.
func TestLexerPositions(t *testing.T) {
	toks, _ := lex("f", []byte("x = \"é\" y\n  x := a"))
	want := []struct {
		value          string
		off, line, col int
	}{
		{"x", 0, 1, 1}, {"=", 2, 1, 3}, {`"é"`, 4, 1, 5}, {"y", 9, 1, 9}, {"x", 13, 2, 3}, {":=", 15, 2, 5}, {"a", 18, 2, 8},
	}
	var got []lexer.Token
	for _, tk := range toks {
		if tk.Type != tokWhitespace && tk.Type != lexer.EOF {
			got = append(got, tk)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tokens, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		p := got[i].Pos
		if got[i].Value != w.value || p.Offset != w.off || p.Line != w.line || p.Column != w.col || p.Filename != "f" {
			t.Errorf("token %d = %q at %#v, want %q at %d %d:%d", i, got[i].Value, p, w.value, w.off, w.line, w.col)
		}
	}
}
