package parser_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/parser"
)

func testdataFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("testdata", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".pipe") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestExamples parses the language examples: no diagnostics, every span
// inside the source, every string decoded.
func TestExamples(t *testing.T) {
	files := testdataFiles(t)
	if len(files) < 5 {
		t.Fatalf("found %d example files, want at least 5", len(files))
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, diags := parser.ParseFile(path, src)
			if len(diags) > 0 {
				t.Fatalf("diagnostics:\n%v", diags)
			}
			if f.Name != path {
				t.Errorf("File.Name = %q, want %q", f.Name, path)
			}
			if len(f.Items) == 0 {
				t.Fatal("no items")
			}
			if !strings.HasPrefix(f.Comments[0].Text, "//") || f.Comments[0].Pos.Line != 1 {
				t.Errorf("first comment = %+v, want the header comment on line 1", f.Comments[0])
			}
			for _, b := range checkSpans(path, src, f, diags) {
				t.Error(b)
			}
			checkRoundTrip(t, path, src)
			parser.Walk(reflectOf(f), func(v reflectValue) {
				if s, ok := v.Interface().(*ast.StringLit); ok && s.Parts == nil {
					t.Errorf("string %s at %v has no parts", s.Raw, s.Pos)
				}
			})
		})
	}
}

func TestParseTrees(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"import", `import "lib/x.pipe" as x`,
			`(TopItem (Import Path=(StringLit Raw="\"lib/x.pipe\"" Parts=["lib/x.pipe"]) Alias=(Ident Name="x")))`},
		{"import without alias", `import "x.pipe"`,
			`(TopItem (Import Path=(StringLit Raw="\"x.pipe\"" Parts=["x.pipe"])))`},
		{"pipeline without name", `pipeline { tasks = 2 }`,
			`(TopItem (Pipeline Items=[(BodyItem Member=(Member Path=(Path Parts=["tasks"]) Value=(Value (Number Text="2"))))]))`},
		{"schema types", "schema S {\n a: list<map<string, int?>>\n b: { x: int, y: lib.T }?\n}",
			`(TopItem (Schema Name=(Ident Name="S") Fields=[(Field Name=(Ident Name="a") Type=(Type List=(Type MapKey=(Type Name=(Path Parts=["string"])) MapValue=(Type Name=(Path Parts=["int"]) Optional=true)))) (Field Name=(Ident Name="b") Type=(Type Record=[(Field Name=(Ident Name="x") Type=(Type Name=(Path Parts=["int"]))) (Field Name=(Ident Name="y") Type=(Type Name=(Path Parts=["lib" "T"])))] Optional=true))]))`},
		{"stage without body", `transform t: lib.f(a = 1, b)`,
			`(TopItem (Stage Kind="transform" Name=(Ident Name="t") Component=(RefOrCall Name=(Path Parts=["lib" "f"]) Call=true Args=[(Arg Name="a" Value=(Value (Number Text="1"))) (Arg Value=(Value (RefOrCall Name=(Path Parts=["b"]))))])))`},
		{"empty body", `sink s: stdout {}`,
			`(TopItem (Stage Kind="sink" Name=(Ident Name="s") Component=(RefOrCall Name=(Path Parts=["stdout"])) Body=true))`},
		{"literals", "source s: gen { a = -1.5 b = 1m30s c = 1.5MiB d = true e = false f = null g = `raw` h = [1 2, 3,] i = { k: 1, \"q k\" = 2 } }",
			`(TopItem (Stage Kind="source" Name=(Ident Name="s") Component=(RefOrCall Name=(Path Parts=["gen"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["a"]) Value=(Value (Number Neg=true Text="1.5")))) (BodyItem Member=(Member Path=(Path Parts=["b"]) Value=(Value "1m30s"))) (BodyItem Member=(Member Path=(Path Parts=["c"]) Value=(Value "1.5MiB"))) (BodyItem Member=(Member Path=(Path Parts=["d"]) Value=(Value true))) (BodyItem Member=(Member Path=(Path Parts=["e"]) Value=(Value false))) (BodyItem Member=(Member Path=(Path Parts=["f"]) Value=(Value true))) (BodyItem Member=(Member Path=(Path Parts=["g"]) Value=(Value "` + "`raw`" + `"))) (BodyItem Member=(Member Path=(Path Parts=["h"]) Value=(Value (List Items=[(Value (Number Text="1")) (Value (Number Text="2")) (Value (Number Text="3"))])))) (BodyItem Member=(Member Path=(Path Parts=["i"]) Value=(Value (Map Entries=[(MapEntry Ident="k" Value=(Value (Number Text="1"))) (MapEntry Key=(StringLit Raw="\"q k\"" Parts=["q k"]) Equals=true Value=(Value (Number Text="2")))]))))]))`},
		{"where and one-line body", `transform f: filter { where a > 1 }`,
			`(TopItem (Stage Kind="transform" Name=(Ident Name="f") Component=(RefOrCall Name=(Path Parts=["filter"])) Body=true Items=[(BodyItem Where=(Expr Text="a > 1"))]))`},
		{"expression stops at comment", "transform m: map {\n  x := a + \"//\" // note\n}",
			`(TopItem (Stage Kind="transform" Name=(Ident Name="m") Component=(RefOrCall Name=(Path Parts=["map"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["x"]) Assign=(Expr Text="a + \"//\"")))]))`},
		{"multi-line expression", "transform m: map {\n  x: int := f(a,\n    b) + g[\n  1]\n  y := 2\n}",
			`(TopItem (Stage Kind="transform" Name=(Ident Name="m") Component=(RefOrCall Name=(Path Parts=["map"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["x"]) Type=(Type Name=(Path Parts=["int"])) Assign=(Expr Text="f(a,\n    b) + g[\n  1]"))) (BodyItem Member=(Member Path=(Path Parts=["y"]) Assign=(Expr Text="2")))]))`},
		{"brackets inside strings", "transform m: map { x := \")\" + '(' + `}` + y }",
			`(TopItem (Stage Kind="transform" Name=(Ident Name="m") Component=(RefOrCall Name=(Path Parts=["map"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["x"]) Assign=(Expr Text="\")\" + '(' + ` + "`}`" + ` + y")))]))`},
		{"expr map literal and closure", "transform m: map { x := {a: 1}.a + len(filter(l, {# > 1})) }",
			`(TopItem (Stage Kind="transform" Name=(Ident Name="m") Component=(RefOrCall Name=(Path Parts=["map"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["x"]) Assign=(Expr Text="{a: 1}.a + len(filter(l, {# > 1}))")))]))`},
		{"when and where as names", "sink s: x { when = 1 a.where = 2 where: int := 3 }",
			`(TopItem (Stage Kind="sink" Name=(Ident Name="s") Component=(RefOrCall Name=(Path Parts=["x"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["when"]) Value=(Value (Number Text="1")))) (BodyItem Member=(Member Path=(Path Parts=["a" "where"]) Value=(Value (Number Text="2")))) (BodyItem Member=(Member Path=(Path Parts=["where"]) Type=(Type Name=(Path Parts=["int"])) Assign=(Expr Text="3")))]))`},
		{"route", "transform r: route {\n  case hi when x > 1\n  else lo\n}",
			`(TopItem (Stage Kind="transform" Name=(Ident Name="r") Component=(RefOrCall Name=(Path Parts=["route"])) Body=true Items=[(BodyItem Case=(Case Port=(Ident Name="hi") When=(Expr Text="x > 1"))) (BodyItem Else=(Ident Name="lo"))]))`},
		{"keep and drop", "transform m: map { keep a, b.c\n drop d }",
			`(TopItem (Stage Kind="transform" Name=(Ident Name="m") Component=(RefOrCall Name=(Path Parts=["map"])) Body=true Items=[(BodyItem Keep=[(Path Parts=["a"]) (Path Parts=["b" "c"])]) (BodyItem Drop=[(Path Parts=["d"])])]))`},
		{"def", "def sink s(a: int, b: string = \"x\",): stdout { }",
			`(TopItem (Def Kind="sink" Name=(Ident Name="s") Params=[(Param Name=(Ident Name="a") Type=(Type Name=(Path Parts=["int"]))) (Param Name=(Ident Name="b") Type=(Type Name=(Path Parts=["string"])) Default=(Value (StringLit Raw="\"x\"" Parts=["x"])))] Component=(RefOrCall Name=(Path Parts=["stdout"])) Body=true))`},
		{"flows", "a -> b.p -> [c, d.q,]",
			`(TopItem (Flow Nodes=[(FlowNode Refs=[(PortRef Stage=(Ident Name="a"))]) (FlowNode Refs=[(PortRef Stage=(Ident Name="b") Port="p")]) (FlowNode Bracket=true Refs=[(PortRef Stage=(Ident Name="c")) (PortRef Stage=(Ident Name="d") Port="q")])]))`},
		{"test", "test \"t\" {\n clock = \"x\"\n given a [{ v: 1 }]\n expect b count 2\n expect c empty\n expect d where v > 1\n expect e [{ v: 1 }]\n}",
			`(TopItem (Test Name=(StringLit Raw="\"t\"" Parts=["t"]) Items=[(TestItem (Member Path=(Path Parts=["clock"]) Value=(Value (StringLit Raw="\"x\"" Parts=["x"])))) (TestItem (Given Source=(Ident Name="a") Records=(List Items=[(Value (Map Entries=[(MapEntry Ident="v" Value=(Value (Number Text="1")))]))]))) (TestItem (Expect Target=(PortRef Stage=(Ident Name="b")) Count=(Number Text="2"))) (TestItem (Expect Target=(PortRef Stage=(Ident Name="c")) Empty=true)) (TestItem (Expect Target=(PortRef Stage=(Ident Name="d")) Where=(Expr Text="v > 1"))) (TestItem (Expect Target=(PortRef Stage=(Ident Name="e")) Records=(List Items=[(Value (Map Entries=[(MapEntry Ident="v" Value=(Value (Number Text="1")))]))])))]))`},
		{"string escapes and references", `sink s: x { a = "q\"\\\n\t\$${env:A}${file:/a:b/c.properties:key}${param:p}\u00e9" }`,
			`(TopItem (Stage Kind="sink" Name=(Ident Name="s") Component=(RefOrCall Name=(Path Parts=["x"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["a"]) Value=(Value (StringLit Raw="\"q\\\"\\\\\\n\\t\\$${env:A}${file:/a:b/c.properties:key}${param:p}\\u00e9\"" Parts=["q\"\\\n\t$" (Interp ${env:A}) (Interp ${file:/a:b/c.properties:key}) (Interp ${param:p}) "é"]))))]))`},
		{"crlf line endings", "sink s: x {\r\n  a = 1\r\n  b := c\r\n}\r\n",
			`(TopItem (Stage Kind="sink" Name=(Ident Name="s") Component=(RefOrCall Name=(Path Parts=["x"])) Body=true Items=[(BodyItem Member=(Member Path=(Path Parts=["a"]) Value=(Value (Number Text="1")))) (BodyItem Member=(Member Path=(Path Parts=["b"]) Assign=(Expr Text="c")))]))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, diags := parser.ParseFile("t.pipe", []byte(tt.src))
			if len(diags) > 0 {
				t.Fatalf("diagnostics:\n%v", diags)
			}
			if len(f.Items) != 1 {
				t.Fatalf("got %d items, want 1", len(f.Items))
			}
			if got := dump(f.Items[0]); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			for _, b := range checkSpans("t.pipe", []byte(tt.src), f, diags) {
				t.Error(b)
			}
			checkRoundTrip(t, "t.pipe", []byte(tt.src))
		})
	}
}

func TestPositions(t *testing.T) {
	src := "// c1\nsource s: k {\n  x := é + \"${env:ABC}\" /* c2 */\n  y = \"ü${env:KEY}\"\n}\n"
	f, diags := parser.ParseFile("p.pipe", []byte(src))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	st := f.Items[0].Stage
	if got := st.Pos; got.Offset != 6 || got.Line != 2 || got.Column != 1 {
		t.Errorf("stage pos = %v", got)
	}
	if got := st.EndPos; got.Offset != len(src)-1 || got.Line != 5 || got.Column != 2 {
		t.Errorf("stage end = %#v, want just past the closing brace", got)
	}
	x := st.Items[0].Member.Assign
	if x.Pos.Line != 3 || x.Pos.Column != 8 || x.Text != `é + "${env:ABC}"` {
		t.Errorf("expr = %q at %v", x.Text, x.Pos)
	}
	if x.EndPos.Column != 24 {
		t.Errorf("expr end column = %d, want 24 (trailing space trimmed)", x.EndPos.Column)
	}
	y := st.Items[1].Member.Value.String
	in := y.Parts[1].Interp
	if in == nil || in.Provider != "env" || in.Key != "KEY" {
		t.Fatalf("parts = %+v", y.Parts)
	}
	if got := src[in.Span.Start.Offset:in.Span.End.Offset]; got != "${env:KEY}" {
		t.Errorf("interp span covers %q", got)
	}
	if in.Span.Start.Line != 4 || in.Span.Start.Column != 9 || in.Span.End.Column != 19 {
		t.Errorf("interp span = %v..%v", in.Span.Start, in.Span.End)
	}
	if len(f.Comments) != 2 || f.Comments[0].Text != "// c1" || f.Comments[1].Text != "/* c2 */" {
		t.Fatalf("comments = %+v", f.Comments)
	}
	if c := f.Comments[1]; c.Pos.Line != 3 || c.Pos.Column != 25 || c.EndPos.Column != 33 {
		t.Errorf("comment c2 at %v..%v", c.Pos, c.EndPos)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		code lang.Code
		pos  string // line:col
		msg  string // substring of the message
	}{
		{"missing value", "source s: kafka { topic = }", lang.SyntaxError, "1:27", `expected a value after "="`},
		{"missing value at end of line", "source s: kafka {\n  topic =\n  x = 1\n}", lang.SyntaxError, "2:9", `expected a value after "="`},
		{"unclosed paren before attribute", "transform t: filter {\n  where (a > 1\n  tasks = 2\n}\n", lang.UnclosedBracket, "2:9", `unclosed "("`},
		{"unclosed paren before brace", "transform t: filter {\n  where (a > 1\n}\n", lang.UnclosedBracket, "2:9", `unclosed "("`},
		{"unclosed paren at eof", "transform t: filter {\n  where f(a, g(b)", lang.UnclosedBracket, "2:10", `missing ")"`},
		{"unclosed bracket before keyword", "transform t: route {\n  case a when x in [1, 2\n  case b when y\n}", lang.UnclosedBracket, "2:20", `unclosed "["`},
		{"unclosed brace in expression", "transform t: map {\n  x := {a: 1\n  y := 2\n}", lang.UnclosedBracket, "2:8", `unclosed "{"`},
		{"mismatched bracket in expression", "transform t: map { x := f(a] }", lang.UnclosedBracket, "1:26", `unclosed "("`},
		{"empty where", "transform t: filter {\n  where\n}\n", lang.SyntaxError, "2:3", `expected an expression after "where"`},
		{"empty where before brace", "transform t: filter { where }", lang.SyntaxError, "1:29", `"}"`},
		{"empty assign", "transform t: map {\n  x :=\n}\n", lang.SyntaxError, "2:5", `expected an expression after ":="`},
		{"empty when", "transform t: route {\n  case a when\n}\n", lang.SyntaxError, "2:10", `expected an expression after "when"`},
		{"spaced duration", "sink s: http {\n  timeout = 5 s\n}\n", lang.BadLiteral, "2:13", `write "5s"`},
		{"spaced size", "sink s: s3 { rotate = 256 MiB }", lang.BadLiteral, "1:23", `write "256MiB"`},
		{"fractional duration", "sink s: http { timeout = 1.5s }", lang.BadLiteral, "1:26", `"1.5s"`},
		{"bad unit", "sink s: http { timeout = 5sec }", lang.BadLiteral, "1:26", `malformed literal "5sec"`},
		{"exponent without dot", "sink s: x { a = 1e5 }", lang.BadLiteral, "1:17", `"1e5"`},
		{"missing closing brace", "source s: kafka {\n  topic = \"x\"\n", lang.UnclosedBracket, "1:17", `missing "}"`},
		{"missing brace before next declaration", "source s: kafka {\n  topic = \"x\"\n\nsink b: kafka {\n}\n", lang.UnclosedBracket, "1:17", `before "sink" on line 4`},
		{"missing brace of nested block", "source s: kafka {\n  sasl {\n    a = 1\n}\n\nsink b: kafka {}\n", lang.UnclosedBracket, "2:8", `unclosed "{"`},
		{"unclosed list", "sink s: x { a = [1, 2 }", lang.UnclosedBracket, "1:17", `unclosed "["`},
		{"unknown provider", "source s: kafka {\n  password = \"${vault:x}\"\n}\n", lang.BadInterpolation, "2:15", `unknown provider "vault"`},
		{"reference without provider", `sink s: x { a = "${HOME}" }`, lang.BadInterpolation, "1:18", `missing ":"`},
		{"unterminated reference", `sink s: x { a = "${env:A" }`, lang.BadInterpolation, "1:18", `never closed`},
		{"bad env name", `sink s: x { a = "${env:A-B}" }`, lang.BadInterpolation, "1:18", `not a valid env name`},
		{"file reference without key", `sink s: x { a = "${file:/etc/x}" }`, lang.BadInterpolation, "1:18", `${file:path:key}`},
		{"unknown escape", `sink s: x { a = "a\qb" }`, lang.BadLiteral, "1:19", `unknown escape sequence "\\q"`},
		{"unterminated string", "source s: kafka {\n  topic = \"abc\n}\n", lang.SyntaxError, "2:11", `unterminated string`},
		{"unterminated raw string", "sink s: x { a = `abc }", lang.SyntaxError, "1:17", `unterminated raw string`},
		{"unterminated string in expression", "transform t: map { x := 'abc }", lang.SyntaxError, "1:25", `unterminated string in expression`},
		{"unterminated comment", "sink s: x {}\n/* abc", lang.SyntaxError, "2:1", `unterminated comment`},
		{"stray closing brace", "sink s: x {}\n}\n", lang.SyntaxError, "2:1", `unexpected "}"`},
		{"stray character", "sink s: x { a = 1; }", lang.SyntaxError, "1:18", `unexpected character ';'`},
		{"single-quoted string", "sink s: x { a = 'x' }", lang.SyntaxError, "1:17", `use double quotes`},
		{"missing equals", "source s: kafka {\n  tasks 4\n}\n", lang.SyntaxError, "2:9", `expected "=" (attribute) or ":=" (expression)`},
		{"missing colon", "source s kafka {}", lang.SyntaxError, "1:10", `expected ":"`},
		{"missing flow target", "a -> \n", lang.SyntaxError, "1:3", `after "->"`},
		{"missing type", "schema X { a: }", lang.SyntaxError, "1:15", `expected a type after ":"`},
		{"stray token at top level", "sink s: x {}\n42\n", lang.SyntaxError, "2:1", `expected a declaration`},
		{"stray bracket in body", "source s: kafka { x = 1 ] }", lang.SyntaxError, "1:25", `unexpected "]": nothing to close`},
		{"import without string", "import lib", lang.SyntaxError, "1:8", `expected a string (the file to import) after "import"`},
		{"test without name", "test x {}", lang.SyntaxError, "1:6", `after "test"`},
		{"stage without name", "source: kafka {}", lang.SyntaxError, "1:7", `expected a stage name after "source"`},
		{"keep without field", "transform t: map { keep }", lang.SyntaxError, "1:25", `expected a field name after "keep"`},
		{"attribute without name", "source s: kafka { = 1 }", lang.SyntaxError, "1:19", `expected a name before "="`},
		{"empty list item", "source s: kafka { x = [1, , 2] }", lang.SyntaxError, "1:27", `expected a value or "]" after ","`},
		{"double arrow", "a -> -> b", lang.SyntaxError, "1:6", `after "->"`},
		{"missing call argument value", "sink s: x { on_error = retry(max = ) }", lang.SyntaxError, "1:36", `expected a value after "="`},
		{"invalid utf-8", "sink s: x { a = 1 }\xff", lang.SyntaxError, "1:20", `invalid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, diags := parser.ParseFile("e.pipe", []byte(tt.src))
			errs := diags.Errors()
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), diags)
			}
			d := errs[0]
			if d.Code != tt.code || d.Span.Start.String() != tt.pos || !strings.Contains(d.Message, tt.msg) {
				t.Errorf("got %v\nwant %s at %s with %q", d, tt.code, tt.pos, tt.msg)
			}
			if d.Message != strings.ToLower(d.Message[:1])+d.Message[1:] || strings.HasSuffix(d.Message, ".") {
				t.Errorf("message %q: want lower-case start and no final period", d.Message)
			}
			for _, b := range checkSpans("e.pipe", []byte(tt.src), f, diags) {
				t.Error(b)
			}
			checkRoundTrip(t, "e.pipe", []byte(tt.src))
		})
	}
}

// TestPartialTree checks that a syntax error still returns what was parsed.
func TestPartialTree(t *testing.T) {
	f, diags := parser.ParseFile("p.pipe", []byte("source a: k {}\nsink b: k { x = }\n"))
	if !diags.HasErrors() {
		t.Fatal("want an error")
	}
	if f == nil || len(f.Items) == 0 || f.Items[0].Stage == nil || f.Items[0].Stage.Name.Name != "a" {
		t.Fatalf("partial tree = %s", dump(f))
	}
}
