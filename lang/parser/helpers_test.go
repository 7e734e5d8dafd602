package parser_test

import (
	"fmt"
	"reflect"

	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
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
	walkNodes(reflect.ValueOf(f), func(v reflect.Value) {
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

// walkNodes calls fn for every non-nil pointer to a struct reachable from v.
func walkNodes(v reflect.Value, fn func(reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if v.Elem().Kind() == reflect.Struct {
			fn(v)
		}
		walkNodes(v.Elem(), fn)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(lexer.Position{}) || v.Type() == reflect.TypeOf(lang.Span{}) {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				walkNodes(v.Field(i), fn)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkNodes(v.Index(i), fn)
		}
	}
}

type reflectValue = reflect.Value

func reflectOf(v any) reflect.Value { return reflect.ValueOf(v) }
