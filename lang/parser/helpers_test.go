package parser_test

import (
	"fmt"
	"reflect"

	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/parser"
)

// checkSpans returns a description of every node position, interpolation
// span and diagnostic span that is outside src or whose line and column
// disagree with its offset.
func checkSpans(name string, src []byte, f *ast.File, diags lang.Diagnostics) []string {
	lines := lang.NewLines(name, src)
	var bad []string
	checkPos := func(what string, p lang.Pos) {
		if p.Offset < 0 || p.Offset > len(src) {
			bad = append(bad, fmt.Sprintf("%s: offset %d outside [0, %d]", what, p.Offset, len(src)))
			return
		}
		if want := lines.Pos(p.Offset); want != p {
			bad = append(bad, fmt.Sprintf("%s: position %+v, want %+v", what, p, want))
		}
	}
	checkSpan := func(what string, s lang.Span) {
		checkPos(what+" start", s.Start)
		checkPos(what+" end", s.End)
		if s.End.Offset < s.Start.Offset {
			bad = append(bad, fmt.Sprintf("%s: end %d before start %d", what, s.End.Offset, s.Start.Offset))
		}
		if s.File != name {
			bad = append(bad, fmt.Sprintf("%s: file %q, want %q", what, s.File, name))
		}
	}
	for _, d := range diags {
		checkSpan("diagnostic "+d.String(), d.Span)
	}
	if f == nil {
		return bad
	}
	parser.Walk(reflect.ValueOf(f), func(v reflect.Value) {
		typ := v.Elem().Type().Name()
		if pos := v.Elem().FieldByName("Pos"); pos.IsValid() && pos.Type() == reflect.TypeOf(lexer.Position{}) {
			start := pos.Interface().(lexer.Position)
			end := v.Elem().FieldByName("EndPos").Interface().(lexer.Position)
			if start.Line == 0 && end.Line == 0 && typ == "File" {
				return
			}
			if start.Filename != name && start.Line != 0 {
				bad = append(bad, fmt.Sprintf("%s: filename %q", typ, start.Filename))
			}
			s := lang.Span{File: name,
				Start: lang.Pos{Offset: start.Offset, Line: start.Line, Column: start.Column},
				End:   lang.Pos{Offset: end.Offset, Line: end.Line, Column: end.Column}}
			checkSpan(typ, s)
		}
		if in, ok := v.Interface().(*ast.Interp); ok {
			checkSpan("Interp "+in.String(), in.Span)
		}
	})
	return bad
}

type reflectValue = reflect.Value

func reflectOf(v any) reflect.Value { return reflect.ValueOf(v) }
