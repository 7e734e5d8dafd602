package parser

import (
	"fmt"
	"reflect"
	"runtime/debug"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
)

// grammar is built once; participle parsers are safe for concurrent use.
var grammar = participle.MustBuild[ast.File](
	participle.Lexer(Definition{}),
	participle.Elide("Comment", "Whitespace"),
	participle.UseLookahead(participle.MaxLookahead),
)

var elided = []lexer.TokenType{tokComment, tokWhitespace}

// ParseFile parses one .pipe file. It always returns the tree it could
// build (nil only when nothing could be parsed) together with the
// diagnostics found: lexical errors, at most one syntax error, and
// malformed string escapes or ${...} references. It never panics.
func ParseFile(name string, src []byte) (f *ast.File, diags lang.Diagnostics) {
	defer func() {
		if r := recover(); r != nil {
			f = nil
			diags = append(diags, lang.Errorf(lang.Internal, lang.NewLines(name, src).Span(0, 0),
				"internal error while parsing: %v", r))
			diags[len(diags)-1].Detail = string(debug.Stack())
		}
	}()
	toks, lexDiags := lex(name, src)
	diags = append(diags, lexDiags...)

	peek, err := lexer.Upgrade(&tokenStream{toks: toks}, elided...)
	if err != nil {
		diags = append(diags, lang.Errorf(lang.Internal, lang.NewLines(name, src).Span(0, 0), "%v", err))
		return nil, diags
	}
	f, err = grammar.ParseFromLexer(peek)
	if err != nil {
		// A lexical error usually causes the syntax error; report the
		// syntax error only when participle met it first.
		// An unterminated string or bracket swallows the rest of the file;
		// participle then blames an earlier token.
		if b, _ := unclosedAtEOF(toks); len(lexDiags) == 0 || (b == nil && errorOffset(err, len(src)) < lexDiags[0].Span.Start.Offset) {
			diags = append(diags, syntaxError(name, src, toks, err))
		}
	}
	if f == nil {
		f = &ast.File{}
	}
	f.Name = name
	f.Pos = lexer.Position{Filename: name, Offset: 0, Line: 1, Column: 1}
	f.EndPos = toks[len(toks)-1].Pos
	for _, t := range toks {
		if t.Type == tokComment {
			end := t.Pos
			end.Advance(t.Value)
			f.Comments = append(f.Comments, &ast.Comment{Pos: t.Pos, EndPos: end, Text: t.Value})
		}
	}
	diags = append(diags, fixNodes(name, f)...)
	diags.Sort()
	return f, diags
}

// fixNodes fills StringLit.Parts of every string in f and makes sure no
// node ends before it starts (participle gives a node that matched no
// token an end before its start).
func fixNodes(name string, f *ast.File) lang.Diagnostics {
	var diags lang.Diagnostics
	walk(reflect.ValueOf(f), func(v reflect.Value) {
		e := v.Elem()
		if pos := e.FieldByName("Pos"); pos.IsValid() && pos.Type() == posType {
			if end := e.FieldByName("EndPos"); end.IsValid() && end.Type() == posType &&
				end.Interface().(lexer.Position).Offset < pos.Interface().(lexer.Position).Offset {
				end.Set(pos)
			}
		}
		if s, ok := v.Interface().(*ast.StringLit); ok {
			var d lang.Diagnostics
			s.Parts, d = decodeString(name, s.Raw, s.Pos)
			diags = append(diags, d...)
		}
	})
	return diags
}

var posType = reflect.TypeOf(lexer.Position{})

// walk calls fn for every non-nil pointer to a struct reachable from v.
func walk(v reflect.Value, fn func(reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if v.Elem().Kind() == reflect.Struct {
			fn(v)
		}
		walk(v.Elem(), fn)
	case reflect.Struct:
		if v.Type() == posType {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				walk(v.Field(i), fn)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walk(v.Index(i), fn)
		}
	}
}

// syntaxError turns a participle error into one diagnostic with a plain
// message at the place of the mistake.
func syntaxError(name string, src []byte, toks []lexer.Token, err error) lang.Diagnostic {
	lines := lang.NewLines(name, src)
	perr, ok := err.(participle.Error)
	if !ok {
		return lang.Errorf(lang.SyntaxError, lines.Span(0, 0), "%v", err)
	}
	pos := perr.Position()
	off := pos.Offset
	if off < 0 || off > len(src) {
		off = len(src)
	}
	idx := tokenAt(toks, off)
	var unexpected lexer.Token
	if idx >= 0 {
		unexpected = toks[idx]
	} else {
		unexpected = toks[len(toks)-1]
	}
	expect := ""
	if u, ok := perr.(*participle.UnexpectedTokenError); ok {
		expect = expectedOf(u)
	}
	return explain(lines, toks, idx, unexpected, expect, perr.Message())
}

// tokenAt returns the index of the first significant token at or after off.
func tokenAt(toks []lexer.Token, off int) int {
	for i, t := range toks {
		if t.Pos.Offset >= off && t.Type != tokWhitespace && t.Type != tokComment {
			return i
		}
	}
	return -1
}

func expectedOf(u *participle.UnexpectedTokenError) string {
	msg := u.Message()
	const marker = " (expected "
	for i := 0; i+len(marker) <= len(msg); i++ {
		if msg[i:i+len(marker)] == marker {
			e := msg[i+len(marker):]
			if len(e) > 0 && e[len(e)-1] == ')' {
				e = e[:len(e)-1]
			}
			return e
		}
	}
	return u.Expect
}

func describe(t lexer.Token) string {
	switch t.Type {
	case lexer.EOF:
		return "end of file"
	case tokString, tokRawString:
		return "string " + t.Value
	case tokExpr:
		return fmt.Sprintf("expression %q", t.Value)
	case tokInt, tokFloat:
		return "number " + t.Value
	}
	return fmt.Sprintf("%q", t.Value)
}

// errorOffset returns the offset participle reports err at.
func errorOffset(err error, size int) int {
	if perr, ok := err.(participle.Error); ok {
		return perr.Position().Offset
	}
	return size
}
