package parser_test

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang/ast"
)

// dump renders a node as a compact tree: (Type Field=value ...), leaving
// out positions and zero values.
func dump(v any) string {
	var b strings.Builder
	dumpValue(&b, reflect.ValueOf(v))
	return b.String()
}

func dumpValue(b *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		dumpValue(b, v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(ast.StringPart{}) {
			p := v.Interface().(ast.StringPart)
			if p.Interp != nil {
				fmt.Fprintf(b, "(Interp %s)", p.Interp)
			} else {
				fmt.Fprintf(b, "%q", p.Text)
			}
			return
		}
		b.WriteString("(" + v.Type().Name())
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			fv := v.Field(i)
			if !f.IsExported() || f.Type == reflect.TypeOf(lexer.Position{}) || fv.IsZero() || f.Name == "Comments" || f.Name == "Name" && v.Type() == reflect.TypeOf(ast.File{}) {
				continue
			}
			// TopItem, BodyItem, Value and TestItem are unions: show the member only.
			switch v.Type() {
			case reflect.TypeOf(ast.TopItem{}), reflect.TypeOf(ast.Value{}), reflect.TypeOf(ast.TestItem{}):
				b.WriteString(" ")
				dumpValue(b, fv)
				continue
			}
			b.WriteString(" " + f.Name + "=")
			dumpValue(b, fv)
		}
		b.WriteString(")")
	case reflect.Slice:
		b.WriteString("[")
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b.WriteString(" ")
			}
			dumpValue(b, v.Index(i))
		}
		b.WriteString("]")
	case reflect.String:
		fmt.Fprintf(b, "%q", v.String())
	default:
		fmt.Fprintf(b, "%v", v.Interface())
	}
}
