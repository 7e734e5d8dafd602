package parser

import (
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
)

// grammar is built once, when first needed (the hand-written parser takes
// most files: building it would cost every pipe command 2 ms at start);
// participle parsers are safe for concurrent use.
var grammar = sync.OnceValue(func() *participle.Parser[ast.File] {
	return participle.MustBuild[ast.File](
		participle.Lexer(lexDefinition{}),
		participle.Elide("Comment", "Whitespace"),
		participle.UseLookahead(1),
	)
})

var elided = []lexer.TokenType{tokComment, tokWhitespace}

// ParseFile parses one .pipe file. It always returns the tree it could
// build (nil only when nothing could be parsed) together with the
// diagnostics found: lexical errors, at most one syntax error, and
// malformed string escapes or ${...} references. It never panics.
func ParseFile(name string, src []byte) (*ast.File, lang.Diagnostics) {
	return parse(name, src, true)
}

// parse is ParseFile; fast says whether to try the hand-written parser
// (fast.go) before participle.
func parse(name string, src []byte, fast bool) (f *ast.File, diags lang.Diagnostics) {
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
	if fast && len(lexDiags) == 0 {
		if ff, d, ok := fastParse(name, toks); ok {
			return finish(name, toks, ff, append(diags, d...), false)
		}
	}

	peek, err := lexer.Upgrade(&tokenStream{toks: toks}, elided...)
	if err != nil {
		diags = append(diags, lang.Errorf(lang.Internal, lang.NewLines(name, src).Span(0, 0), "%v", err))
		return nil, diags
	}
	f, err = grammar().ParseFromLexer(peek)
	if err != nil {
		// A lexical error usually causes the syntax error; report the
		// syntax error only when participle met it first.
		// An unterminated string or bracket swallows the rest of the file;
		// participle then blames an earlier token.
		if b, _ := unclosedAtEOF(toks); len(lexDiags) == 0 || (b == nil && errorOffset(err, len(src)) < lexDiags[0].Span.Start.Offset) {
			diags = append(diags, syntaxError(name, src, toks, f, err))
		}
	}
	return finish(name, toks, f, diags, true)
}

// finish completes a parsed tree: name, positions and comments, and, for
// a tree from participle (fix), node positions and strings.
func finish(name string, toks []lexer.Token, f *ast.File, diags lang.Diagnostics, fix bool) (*ast.File, lang.Diagnostics) {
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
	if fix {
		diags = append(diags, fixNodes(name, f)...)
	}
	diags.Sort()
	return f, diags
}

// fixNodes fills StringLit.Parts of every string in f and makes every
// node's positions valid (see fixPositions).
func fixNodes(name string, f *ast.File) lang.Diagnostics {
	var diags lang.Diagnostics
	fixPositions(reflect.ValueOf(f), f.Pos, func(s *ast.StringLit) {
		var d lang.Diagnostics
		s.Parts, d = decodeString(name, s.Raw, s.Pos)
		diags = append(diags, d...)
	})
	return diags
}

var posType = reflect.TypeOf(lexer.Position{})

// fixPositions makes every node's positions valid: a node of a partial
// tree may lack its start (it takes its parent's) or its end, and a node
// that matched no token may end before it starts (it then ends where it
// starts). It calls str for every string literal.
func fixPositions(v reflect.Value, parent lexer.Position, str func(*ast.StringLit)) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if s, ok := v.Interface().(*ast.StringLit); ok {
			defer str(s)
		}
		fixPositions(v.Elem(), parent, str)
	case reflect.Struct:
		info := structInfoOf(v.Type())
		if info.hasPos {
			pos, end := v.Field(0), v.Field(1)
			p := pos.Interface().(lexer.Position)
			if p.Line == 0 {
				p = parent
				pos.Set(reflect.ValueOf(p))
			}
			if e := end.Interface().(lexer.Position); e.Line == 0 || e.Offset < p.Offset {
				end.Set(reflect.ValueOf(p))
			}
			parent = p
		}
		for _, i := range info.children {
			fixPositions(v.Field(i), parent, str)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			fixPositions(v.Index(i), parent, str)
		}
	}
}

// structInfo says where a node type keeps its positions and children.
type structInfo struct {
	hasPos   bool  // fields 0 and 1 are Pos and EndPos
	children []int // exported fields that may hold nodes
}

var structInfos sync.Map // reflect.Type → *structInfo

func structInfoOf(t reflect.Type) *structInfo {
	if i, ok := structInfos.Load(t); ok {
		return i.(*structInfo)
	}
	info := &structInfo{}
	info.hasPos = t.NumField() >= 2 && t.Field(0).Name == "Pos" && t.Field(0).Type == posType &&
		t.Field(1).Name == "EndPos" && t.Field(1).Type == posType
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Type == posType {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Struct:
			info.children = append(info.children, i)
		}
	}
	structInfos.Store(t, info)
	return info
}

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
//
// participle reports the error of its deepest branch, which for a
// keyword-led declaration is often the flow alternative ("expected ->"),
// and may pair an error with an earlier token than the one the parse
// stopped at. So the failing declaration is parsed again on its own with
// the production its keyword selects, and the error is moved to the first
// token after everything that did parse.
func syntaxError(name string, src []byte, toks []lexer.Token, f *ast.File, err error) lang.Diagnostic {
	lines := lang.NewLines(name, src)
	off, expect, raw := errorInfo(err, len(src))
	var partial any = f

	// The failing top-level item starts after the last complete one.
	start := 0
	if f != nil {
		for _, it := range f.Items {
			if it.EndPos.Line > 0 && it.EndPos.Offset > start {
				start = it.EndPos.Offset
			}
		}
	}
	si := tokenAt(toks, start)
	if si >= 0 && toks[si].Type == tokIdent {
		if sub := subParsers()[toks[si].Value]; sub != nil {
			v, serr := sub(toks[si:])
			partial = v
			if serr != nil {
				off, expect, raw = errorInfo(serr, len(src))
			}
		}
	}
	if reached := maxEnd(partial); reached > off {
		off, expect, raw = reached, "", ""
	}
	if off < 0 || off > len(src) {
		off = len(src)
	}
	idx := tokenAt(toks, off)
	var unexpected lexer.Token
	if idx >= 0 {
		unexpected = toks[idx]
	} else {
		idx = len(toks) - 1
		unexpected = toks[idx]
	}
	if idx == si && unexpected.Type != tokIdent && unexpected.Type != lexer.EOF &&
		!(unexpected.Type == tokPunct && strings.Contains("}])", unexpected.Value)) {
		return lang.Errorf(lang.SyntaxError, spanOfToken(lines, unexpected),
			"unexpected %s: expected a declaration (pipeline, import, schema, def, source, transform, sink, test) or a flow such as \"a -> b\"", describe(unexpected))
	}
	return explain(lines, toks, idx, unexpected, expect, raw)
}

// errorInfo returns the offset, the expectation and the message of a
// participle error.
func errorInfo(err error, size int) (int, string, string) {
	perr, ok := err.(participle.Error)
	if !ok {
		return size, "", err.Error()
	}
	expect := ""
	if u, ok := perr.(*participle.UnexpectedTokenError); ok {
		expect = expectedOf(u)
	}
	return perr.Position().Offset, expect, perr.Message()
}

// maxEnd returns the largest end offset of the nodes of a (partial) tree,
// or -1.
func maxEnd(v any) int {
	end := -1
	if v == nil {
		return end
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return end
	}
	walk(rv, func(n reflect.Value) {
		if e := n.Elem().FieldByName("EndPos"); e.IsValid() && e.Type() == posType {
			if p := e.Interface().(lexer.Position); p.Line > 0 && p.Offset > end {
				end = p.Offset
			}
		}
	})
	return end
}

// subParsers parse one declaration on its own, for error reporting.
var subParsers = sync.OnceValue(func() map[string]func([]lexer.Token) (any, error) {
	stage := subParser[ast.Stage]()
	return map[string]func([]lexer.Token) (any, error){
		"source": stage, "transform": stage, "sink": stage,
		"pipeline": subParser[ast.Pipeline](),
		"import":   subParser[ast.Import](),
		"schema":   subParser[ast.Schema](),
		"def":      subParser[ast.Def](),
		"test":     subParser[ast.Test](),
	}
})

func subParser[T any]() func([]lexer.Token) (any, error) {
	p := participle.MustBuild[T](
		participle.Lexer(lexDefinition{}),
		participle.Elide("Comment", "Whitespace"),
		participle.UseLookahead(1),
	)
	return func(toks []lexer.Token) (any, error) {
		peek, err := lexer.Upgrade(&tokenStream{toks: toks}, elided...)
		if err != nil {
			return nil, err
		}
		return p.ParseFromLexer(peek, participle.AllowTrailing(true))
	}
}

func spanOfToken(lines *lang.Lines, t lexer.Token) lang.Span {
	end := t.Pos.Offset + len(t.Value)
	if t.Type == lexer.EOF {
		end = t.Pos.Offset
	}
	return lines.Span(t.Pos.Offset, end)
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

// Grammar returns the grammar the parser accepts, in participle's EBNF, as
// built from the lang/ast node types (the language reference prints it).
func Grammar() string { return grammar().String() }
