package parser_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestGenerated builds random files from the grammar, with random layout
// and comments, and checks the fuzz properties on each: the fast parser
// and participle agree, spans are in bounds, formatting round-trips.
func TestGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 300
	if testing.Short() {
		n = 50
	}
	for i := 0; i < n; i++ {
		g := &gen{r: r}
		src := g.file()
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkRoundTrip(t, "g.pipe", []byte(src)) })
	}
}

type gen struct {
	r *rand.Rand
}

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *gen) ws() string {
	switch g.r.IntN(12) {
	case 0:
		return "\n"
	case 1:
		return "  /* c */ "
	case 2:
		return " // c\n"
	case 3:
		return "\n\n"
	}
	return " "
}

func (g *gen) name() string {
	return g.pick("a", "b", "orders", "x_1", "where", "when", "list", "map", "count", "empty", "source", "case", "keep")
}

func (g *gen) plainName() string { return g.pick("a", "b", "orders", "x_1", "tasks", "on_error") }

func (g *gen) value(depth int) string {
	switch k := g.r.IntN(12); {
	case k == 0 && depth < 3:
		var items []string
		for j := g.r.IntN(4); j > 0; j-- {
			items = append(items, g.value(depth+1))
		}
		return "[" + strings.Join(items, g.pick(", ", ","+g.ws(), g.ws())) + g.pick("", ",") + "]"
	case k == 1 && depth < 3:
		var items []string
		for j := g.r.IntN(3); j > 0; j-- {
			items = append(items, g.pick(g.plainName(), `"k y"`)+g.pick(": ", " = ")+g.value(depth+1))
		}
		return "{" + g.ws() + strings.Join(items, ","+g.ws()) + g.ws() + "}"
	case k == 2 && depth < 3:
		var args []string
		for j := g.r.IntN(3); j > 0; j-- {
			a := g.value(depth + 1)
			if g.r.IntN(2) == 0 {
				a = g.plainName() + " = " + a
			}
			args = append(args, a)
		}
		return g.plainName() + "(" + strings.Join(args, ", ") + ")"
	case k == 3:
		return g.pick(`"s"`, `"${env:A} and ${file:/x:k}"`, `""`, `"q\"\n"`)
	case k == 4:
		return g.pick("`raw`", "`multi\nline`")
	}
	return g.pick("1", "-2", "3.5", "250ms", "1m30s", "1MiB", "1.5GB", "true", "false", "null", "json", "lib.x")
}

func (g *gen) typ(depth int) string {
	switch k := g.r.IntN(6); {
	case k == 0 && depth < 3:
		return "list<" + g.typ(depth+1) + ">"
	case k == 1 && depth < 3:
		return "map<string, " + g.typ(depth+1) + ">"
	case k == 2 && depth < 3:
		return "{ " + g.plainName() + ": " + g.typ(depth+1) + g.pick("", ", b: int") + " }" + g.pick("", "?")
	}
	return g.pick("string", "int", "Order", "lib.T", "list", "map") + g.pick("", "?")
}

func (g *gen) expr() string {
	return g.pick("a > 1", "f(a,\n    b) == 2", "x in [\"a\", \"b\"]", "{a: 1}.a", "s == \")\"", "(a\n  && b)")
}

func (g *gen) body(depth int) string {
	var items []string
	for j := g.r.IntN(5); j > 0; j-- {
		switch g.r.IntN(9) {
		case 0:
			items = append(items, "where "+g.expr())
		case 1:
			items = append(items, "case "+g.plainName()+" when "+g.expr())
		case 2:
			items = append(items, "else "+g.plainName())
		case 3:
			items = append(items, g.pick("keep", "drop")+" a, b.c")
		case 4:
			items = append(items, g.name()+g.pick("", ": "+g.typ(0))+" := "+g.expr())
		case 5:
			if depth < 2 {
				items = append(items, g.plainName()+" {"+g.body(depth+1)+"}")
				continue
			}
			fallthrough
		default:
			items = append(items, g.name()+g.pick("", ".b")+" = "+g.value(0))
		}
	}
	if len(items) == 0 {
		return g.pick("", " ", "\n")
	}
	return g.ws() + strings.Join(items, "\n") + g.ws()
}

func (g *gen) file() string {
	var decls []string
	for j := 1 + g.r.IntN(6); j > 0; j-- {
		switch g.r.IntN(9) {
		case 0:
			decls = append(decls, "pipeline"+g.pick("", " p")+" {"+g.body(0)+"}")
		case 1:
			decls = append(decls, `import "lib/x.pipe"`+g.pick("", " as lib"))
		case 2:
			var fs []string
			for k := g.r.IntN(4); k > 0; k-- {
				fs = append(fs, g.plainName()+": "+g.typ(0)+g.pick("", ","))
			}
			decls = append(decls, "schema S {"+g.ws()+strings.Join(fs, "\n")+g.ws()+"}")
		case 3:
			decls = append(decls, "def "+g.pick("source", "transform", "sink")+" d(a: int = 1, b: "+g.typ(0)+"): map"+g.pick("", " {"+g.body(0)+"}"))
		case 4:
			decls = append(decls, "test \"t\" {\n  clock = \"x\"\n  given a ["+g.value(0)+"]\n  expect b "+g.pick("count 2", "empty", "where a > 1", "[{ x: 1 }]")+"\n}")
		case 5:
			decls = append(decls, g.plainName()+" -> "+g.pick("b", "b.p", "[c, d.e]")+g.pick("", " -> f"))
		case 6:
			decls = append(decls, "param "+g.plainName()+": "+g.typ(0)+g.pick("", " = "+g.value(0), ` = "${env:X}"`))
		default:
			decls = append(decls, g.pick("source", "transform", "sink")+" "+g.plainName()+": "+g.pick("kafka", "lib.f(a = 1, b)", "retry(max = [1,\n 2])", "m()")+g.pick("", " {"+g.body(0)+"}"))
		}
	}
	return strings.Join(decls, g.pick("\n", "\n\n", "\n// between\n"))
}
