package exec

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/all"
)

// openFuncs are the functions that run before any record flows: what they
// refuse, pipe run refuses at start.
var openFuncs = []string{
	"Run", "buildGraph", "open", "newTransformTask", "stagePrograms", "compileExpr",
	"newSinkTask", "configAttrs", "goValue", "resolveParams",
}

// twin is the compile-time counterpart of one refusal of the executor at
// start: a file the compiler rejects with code, for a refusal that depends
// only on the file; otherwise why there is none.
type twin struct {
	code lang.Code
	src  string // a body put after twinHeader
	// none says why the refusal has no compile-time twin: it depends on
	// more than the file (the environment, a component's resources), or
	// only a plan written by hand can cause it.
	none string
}

const (
	planOnly    = "a plan the compiler never writes (edited by hand)"
	environment = "depends on the environment at start: a secret's value"
	component   = "the component's own refusal at start (its file-only checks are its spec's Check, which the compiler runs)"
)

const twinHeader = `pipeline p {
  delivery = at_least_once
}

schema R {
  id:     string
  amount: float
}
`

// twins maps each refusal, by its format string, to its twin.
var twins = map[string]twin{
	"nil plan":               {none: planOnly},
	"plan has no stages":     {code: lang.NoSource, src: "// nothing\n"},
	"plan stage %d is empty": {none: planOnly},
	"stage %q appears twice in the plan": {code: lang.DuplicateName, src: `
source s: stdin { schema = R }
source s: stdin { schema = R }
sink out: stdout {}
s -> out
`},
	"%s: stage %q: unknown %s %q": {code: lang.UnknownComponent, src: `
source s: stdinn { schema = R }
sink out: stdout {}
s -> out
`},
	"%s: stage %q: unknown transform %q": {code: lang.UnknownComponent, src: `
source s: stdin { schema = R }
transform t: fliter { where amount > 1.0 }
sink out: stdout {}
s -> t -> out
`},
	"%s: stage %q has unknown kind %q":              {none: planOnly},
	"%s: stage %q: component %q cannot run as a %s": {none: planOnly},
	"stage %q: partition_by: %w": {code: lang.UnknownField, src: `
source s: stdin { schema = R }
sink out: stdout {
  tasks        = 2
  partition_by = "idd"
}
s -> out
`},
	"plan edge %s -> %s names an unknown stage": {code: lang.UnknownName, src: `
source s: stdin { schema = R }
sink out: stdout {}
s -> outt
s -> out
`},
	"plan edge %s -> %s leaves a sink": {code: lang.BadEdge, src: `
source s: stdin { schema = R }
sink out: stdout {}
sink more: stdout {}
s -> out -> more
`},
	"plan edge %s -> %s enters a source": {code: lang.BadEdge, src: `
source s: stdin { schema = R }
source t: stdin { schema = R }
sink out: stdout {}
s -> t
s -> out
`},
	"dead-letter edge %s -> %s does not end at a sink": {code: lang.DeadLetterNotSink, src: `
source s: stdin {
  schema   = R
  on_error = dead_letter(t)
}
transform t: filter { where amount > 1.0 }
sink out: stdout {}
s -> t -> out
`},
	"stage %q has two dead-letter sinks": {code: lang.DuplicateAttribute, src: `
source s: stdin {
  schema   = R
  on_error = dead_letter(a)
  on_error = dead_letter(b)
}
sink out: stdout {}
sink a: stdout {}
sink b: stdout {}
s -> out
`},
	"plan has no source": {code: lang.NoSource, src: `
transform t: filter { where amount > 1.0 }
sink out: stdout {}
t -> out
`},
	"%s: stage %q: dead-letter sink %q has no dead-letter edge in the plan": {none: planOnly},
	"%s: stage %q has no input": {code: lang.NoInput, src: `
source s: stdin { schema = R }
sink out: stdout {}
sink spare: stdout {}
s -> out
`},
	"%s: stage %q: %w":          {none: component},
	"%s: stage %q: opening: %w": {none: component},
	"%s: stage %q: unknown route mode %q": {code: lang.BadAttributeValue, src: `
source s: stdin { schema = R }
transform r: route {
  mode = some
  case big when amount > 1.0
  else rest
}
sink out: stdout {}
s -> r
r.big -> out
r.rest -> out
`},
	"stage %q: %w": {code: lang.ExprTypeError, src: `
source s: stdin { schema = R }
transform m: map {
  x := amount + "1"
}
sink out: stdout {}
s -> m -> out
`},
	"%s: %w": {code: lang.SyntaxError, src: `
source s: stdin { schema = R }
transform f: filter { where amount > }
sink out: stdout {}
s -> f -> out
`},
	"plan param %v is incomplete": {none: planOnly},
	"param %q: a param cannot be a %s": {code: lang.AttributeType, src: `
param tags: list<string> = ["a"]
`},
	"param %q: %w":                    {none: environment},
	"param %q: the value of %s is %v": {none: environment},
	"param %q: a value of kind %s": {code: lang.AttributeType, src: `
param region: string = eu
`},
	"param %q: %v": {code: lang.AttributeType, src: `
param since: timestamp = "yesterday"
`},
	"stage %q: attribute %q: %w": {none: environment},
	"stage %q: attribute %q: %s": {none: environment},
	"no secret resolver":         {none: planOnly},
	"call value without a call":  {none: planOnly},
	"unknown value kind %q":      {none: planOnly},
}

// TestOpenErrorsHaveCompileTwins walks the executor's refusals at start
// (the error strings of openFuncs) and checks that each has a
// compile-time twin: a file pipe check rejects with the code the table
// names, or a stated reason why the refusal does not depend on the file
// alone. A new refusal fails the test until it is listed here.
func TestOpenErrorsHaveCompileTwins(t *testing.T) {
	found := openErrors(t)
	for _, f := range found {
		if _, ok := twins[f]; !ok {
			t.Errorf("executor refusal %q has no entry in twins: give it a compile-time twin (or the reason it has none)", f)
		}
	}
	for f, tw := range twins {
		if !slices.Contains(found, f) {
			t.Errorf("twins lists %q, which no open-time function of the executor returns", f)
			continue
		}
		if tw.none != "" {
			continue
		}
		t.Run(f, func(t *testing.T) {
			src := twinHeader + tw.src
			_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "twin.pipe", []byte(src))
			if !slices.ContainsFunc(diags, func(d lang.Diagnostic) bool { return d.Code == tw.code && d.Severity == lang.Error }) {
				t.Errorf("the twin of %q is not rejected with %s:\n%s\n%s", f, tw.code, src, diags)
			}
		})
	}
}

// openErrors returns the format strings of the errors.New and fmt.Errorf
// calls in the bodies of openFuncs.
func openErrors(t *testing.T) []string {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || !slices.Contains(openFuncs, fd.Name.Name) || fd.Body == nil {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, ok := sel.X.(*ast.Ident)
				if !ok || !(pkg.Name == "errors" && sel.Sel.Name == "New" || pkg.Name == "fmt" && sel.Sel.Name == "Errorf") {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok {
					t.Errorf("%s: an error whose message is not a literal", fset.Position(call.Pos()))
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
				return true
			})
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d refusals in %v: the walk is broken", len(out), openFuncs)
	}
	return out
}
