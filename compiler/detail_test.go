package compiler

import (
	"strings"
	"testing"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
)

func compileSrc(t *testing.T, cfg *Config, src string) lang.Diagnostics {
	t.Helper()
	_, diags := Compile(cfg, "main.pipe", []byte(src))
	return diags
}

func find(diags lang.Diagnostics, code lang.Code) *lang.Diagnostic {
	for i := range diags {
		if diags[i].Code == code {
			return &diags[i]
		}
	}
	return nil
}

const okTail = "\nsink o: out { delivery = at_least_once }\ns -> o\n"

func TestDetails(t *testing.T) {
	cases := []struct {
		name, src string
		code      lang.Code
		detail    string // substring of Detail
	}{
		{"duration", "source s: bus { brokers = [\"b\"]  topic = \"t\"  timeout = 5 }" + okTail, lang.AttributeType, "did you mean 5s?"},
		{"component", "source s: gne {}" + okTail, lang.UnknownComponent, `did you mean "gen"?`},
		{"attribute", "source s: gen { interval_ = 1s }" + okTail, lang.UnknownAttribute, `did you mean "interval"?`},
		{"enum", "source s: bus { brokers = [\"b\"]  topic = \"t\"  format = jsn }" + okTail, lang.BadAttributeValue, `did you mean "json"?`},
		{"enum list", "source s: bus { brokers = [\"b\"]  topic = \"t\"  format = xml }" + okTail, lang.BadAttributeValue, "allowed: json, avro, lines"},
		{"stage", "source s: gen {}\nsink o: out { delivery = at_least_once }\ns -> oo\n", lang.UnknownName, `did you mean "o"?`},
		{"delivery", "source s: gen {}\nsink o: out { delivery = exactly_once }\ns -> o\n", lang.DeliveryUnsupported, "at_least_once, at_most_once"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			diags := compileSrc(t, testConfig(), c.src)
			d := find(diags, c.code)
			if d == nil {
				t.Fatalf("no %s in:\n%v", c.code, diags)
			}
			if !strings.Contains(d.Detail, c.detail) {
				t.Errorf("detail %q does not contain %q", d.Detail, c.detail)
			}
		})
	}
}

func TestDuplicateRelated(t *testing.T) {
	diags := compileSrc(t, testConfig(), "source s: gen {}\nsource s: gen {}"+okTail)
	d := find(diags, lang.DuplicateName)
	if d == nil || len(d.Related) != 1 || d.Related[0].Message != "first defined here" || d.Related[0].Span.Start.Line != 1 {
		t.Fatalf("want duplicate with related first definition, got %+v", d)
	}
}

func TestDefInstantiatedAt(t *testing.T) {
	src := "import \"lib.pipe\" as lib\nsource s: bus { brokers = [\"b\"]  topic = \"t\" }\nschema X { m: int }\n" +
		"source x: bus { brokers = [\"b\"]  topic = \"t\"  schema = X }\ntransform f: lib.above(limit = 1)\n" +
		"sink o: out { delivery = at_least_once }\nx -> f -> o\ns -> o\n"
	diags := compileSrc(t, testConfig(), src)
	d := find(diags, lang.UnknownField)
	if d == nil {
		t.Fatalf("no PIPE104 in:\n%v", diags)
	}
	if d.Span.File != "lib.pipe" || d.Span.Start.Line != 3 {
		t.Errorf("error at %v, want lib.pipe:3", d.Span)
	}
	if len(d.Related) == 0 {
		t.Fatalf("no related span")
	}
	// The related span says where, its message not again (a path there
	// would be absolute for an absolute file argument).
	if r := d.Related[len(d.Related)-1]; r.Span.File != "main.pipe" || r.Span.Start.Line != 5 || r.Message != `instantiated by transform "f"` {
		t.Errorf("related = %+v, want main.pipe:5 instantiated by transform \"f\"", r)
	}
}

func TestImportCycle(t *testing.T) {
	src := "import \"cycle_a.pipe\" as a\nsource s: gen {}\ntransform f: a.keep_all()\n" + "sink o: out { delivery = at_least_once }\ns -> f -> o\n"
	diags := compileSrc(t, testConfig(), src)
	d := find(diags, lang.ImportError)
	if d == nil || d.Span.File != "cycle_b.pipe" || !strings.Contains(d.Message, "cycle") {
		t.Fatalf("want import cycle in cycle_b.pipe, got:\n%v", diags)
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	reg := stdlib.NewRegistry(
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "boom", Check: func(map[string]any) []stdlib.AttrError { panic("kaboom") }},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "out"},
	)
	prog, diags := Compile(&Config{Registry: reg}, "main.pipe", []byte("source s: boom {}"+okTail))
	if prog != nil {
		t.Fatal("program returned despite an internal error")
	}
	if d := find(diags, lang.Internal); d == nil || !strings.Contains(d.Message, "kaboom") {
		t.Fatalf("want PIPE901, got:\n%v", diags)
	}
}

func TestApplyLintPolicy(t *testing.T) {
	diags := compileSrc(t, testConfig(), "source s: gen {}\nsink o: out {}\ns -> o\n")
	if diags.HasErrors() || find(diags, lang.NoDelivery) == nil {
		t.Fatalf("want only a PIPE410 warning, got:\n%v", diags)
	}
	if ApplyLintPolicy(diags, []lang.Code{lang.Unused}, false).HasErrors() {
		t.Error("denying another code made errors")
	}
	denied := ApplyLintPolicy(diags, []lang.Code{lang.NoDelivery}, false)
	if d := find(denied, lang.NoDelivery); d == nil || d.Severity != lang.Error {
		t.Error("denied PIPE410 is not an error")
	}
	if find(diags, lang.NoDelivery).Severity != lang.Warning {
		t.Error("ApplyLintPolicy modified its input")
	}
	if !ApplyLintPolicy(diags, nil, true).HasErrors() {
		t.Error("deny all did not turn the lint into an error")
	}
	if len(Silence(diags, []lang.Code{lang.NoDelivery})) != len(diags)-1 {
		t.Error("Silence kept the allowed lint")
	}
}

func TestSecretStaysSymbolic(t *testing.T) {
	src := "source s: bus { brokers = [\"${env:B}\"]  topic = \"t\" }" + okTail
	prog, diags := Compile(testConfig(), "main.pipe", []byte(src))
	if prog == nil {
		t.Fatal(diags)
	}
	a := prog.Stage("s").Attr("brokers")
	l, _ := a.Value.([]any)
	if len(l) != 1 || l[0] != any(irSecret("${env:B}")) {
		t.Errorf("brokers = %#v", a.Value)
	}
}

func TestCompileGarbageNoPanic(t *testing.T) {
	inputs := []string{"", "source", "source s: gen { where", "s -> -> o", "def transform f(: filter {}", "test \"x\" { given }", "\x00\xff"}
	for _, in := range inputs {
		_, diags := Compile(testConfig(), "main.pipe", []byte(in))
		if find(diags, lang.Internal) != nil {
			t.Errorf("%q: internal error: %v", in, diags)
		}
	}
}

func TestUntested(t *testing.T) {
	src := "source s: gen {}\nsource u: gen {}\nsink o: out { delivery = at_least_once }\n[s, u] -> o\n" +
		"test \"x\" {\n  given s [ { n: 1, s: \"a\" } ]\n  expect o count 1\n}\n"
	prog, diags := Compile(testConfig(), "main.pipe", []byte(src))
	if prog == nil {
		t.Fatal(diags)
	}
	got := Untested(prog)
	if len(got) != 1 || got[0].Code != lang.Untested || !strings.Contains(got[0].Message, `"u"`) {
		t.Fatalf("want one PIPE480 for u, got %v", got)
	}
}

func TestExprIssuePosition(t *testing.T) {
	src := "source s: gen {}\ntransform f: filter {\n  where n > 1 && nn > 2\n}\nsink o: out { delivery = at_least_once }\ns -> f -> o\n"
	diags := compileSrc(t, testConfig(), src)
	d := find(diags, lang.UnknownField)
	if d == nil {
		t.Fatalf("no PIPE104 in %v", diags)
	}
	if d.Span.Start.Line != 3 || d.Span.Start.Column != 18 || d.Span.End.Column != 20 {
		t.Errorf("span %d:%d-%d, want 3:18-20", d.Span.Start.Line, d.Span.Start.Column, d.Span.End.Column)
	}
}

func TestImportedSchema(t *testing.T) {
	src := "import \"lib.pipe\" as lib\nschema Local { e: lib.Event }\n" +
		"source s: bus { brokers = [\"b\"]  topic = \"t\"  schema = lib.Event }\n" +
		"sink o: out { delivery = at_least_once  schema = Local }\ns -> o\n"
	prog, diags := Compile(testConfig(), "main.pipe", []byte(src))
	if d := find(diags, lang.SinkSchemaMismatch); d == nil {
		t.Fatalf("want PIPE109 (Event is not Local), got %v", diags)
	}
	if prog != nil {
		t.Fatal("program returned despite errors")
	}
	src = "import \"lib.pipe\" as lib\n" +
		"source s: bus { brokers = [\"b\"]  topic = \"t\"  schema = lib.Event }\n" +
		"sink o: out { delivery = at_least_once  schema = lib.Event }\ns -> o\n"
	prog, diags = Compile(testConfig(), "main.pipe", []byte(src))
	if prog == nil {
		t.Fatal(diags)
	}
	if out := prog.Stage("s").Output; out == nil || out.Name != "Event" || out.Field("at") == nil {
		t.Errorf("source output = %v", out)
	}
}

func TestDefParamSubstitution(t *testing.T) {
	src := "def sink topic_out(name: string, n: int = 3): bus {\n  brokers = [\"b\"]\n  topic = \"events.${param:name}\"\n  key := string(params.n) + s\n}\n" +
		"source s: gen {}\nsink o: topic_out(name = \"x\") { delivery = at_least_once }\ns -> o\n"
	prog, diags := Compile(testConfig(), "main.pipe", []byte(src))
	if prog == nil {
		t.Fatal(diags)
	}
	for _, d := range diags {
		t.Errorf("unexpected %v", d)
	}
	o := prog.Stage("o")
	if v := o.Attr("topic").Value; v != "events.x" {
		t.Errorf("topic = %#v, want events.x", v)
	}
	if o.Def != "topic_out" || len(o.Exprs) != 1 {
		t.Fatalf("def %q exprs %v", o.Def, o.Exprs)
	}
	e := o.Exprs[0]
	if e.Source != "string(params.n) + s" || e.Exec != "string((3)) + s" || e.Span.Start.Line != 4 {
		t.Errorf("expr %+v", e)
	}
}

// TestMissingAttributeDetail: a missing attribute's detail gives its type
// and the first clause of its documentation, not all of it.
func TestMissingAttributeDetail(t *testing.T) {
	spec := &stdlib.Spec{Kind: stdlib.SourceKind, Name: "tmpl", Params: []stdlib.Param{{
		Name: "fields", Type: stdlib.MapOf(stdlib.AnyValue), Required: true,
		Doc: "the record template { field = generator, ... }; generators: seq(), pick(list). Literals are constant",
	}}}
	cfg := &Config{Registry: stdlib.NewRegistry(spec, &stdlib.Spec{Kind: stdlib.SinkKind, Name: "out"})}
	d := find(compileSrc(t, cfg, "source s: tmpl {}"+okTail), lang.MissingAttribute)
	if d == nil {
		t.Fatal("no PIPE304")
	}
	if want := "fields: map<string, any> — the record template { field = generator, ... } (pipe connectors tmpl says more)"; d.Detail != want {
		t.Errorf("detail = %q, want %q", d.Detail, want)
	}
}
