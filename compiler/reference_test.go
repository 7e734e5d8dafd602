package compiler

import (
	"pipe.dev/pipe/compiler/ir"
	"testing"

	"pipe.dev/pipe/lang"
)

// A ${env:...} reference may stand for an attribute of any scalar kind; it
// stays symbolic and is converted when a task starts.
func TestReferenceForScalarAttribute(t *testing.T) {
	src := "source s: bus { brokers = [\"b\"]  topic = \"t\"  timeout = \"${env:TIMEOUT}\" }" + okTail
	prog, diags := Compile(testConfig(), "main.pipe", []byte(src))
	if prog == nil {
		t.Fatal(diags)
	}
	if v := prog.Stage("s").Attr("timeout").Value; v != any(irSecret("${env:TIMEOUT}")) {
		t.Errorf("timeout = %#v, want the symbolic reference", v)
	}
	// A plain string is still the wrong kind.
	bad := "source s: bus { brokers = [\"b\"]  topic = \"t\"  timeout = \"5s\" }" + okTail
	if d := find(compileSrc(t, testConfig(), bad), lang.AttributeType); d == nil {
		t.Error("a plain string for a duration was accepted")
	}
}

// A file without stages is a library: its defs and schemas are not unused,
// but a parameter its body never reads is.
func TestLibraryDefsNotUnused(t *testing.T) {
	src := `
schema Row { id: string }
def transform keep_domain(domain: string, unused: int = 1): filter {
  where id != params.domain
}
`
	diags := compileSrc(t, testConfig(), src)
	var got []string
	for _, d := range diags {
		if d.Code == lang.Unused {
			got = append(got, d.Message)
		}
	}
	if len(got) != 1 || got[0] != `parameter "unused" of def "keep_domain" is not used` {
		t.Errorf("unused lints = %q", got)
	}
}

// A map attribute may be written as a block: name { key = value ... }.
func TestMapAttributeAsBlock(t *testing.T) {
	src := "source s: gen {\n  labels {\n    team = \"core\"\n    tier = \"gold\"\n  }\n}" + okTail
	prog, diags := Compile(testConfig(), "main.pipe", []byte(src))
	if prog == nil {
		t.Fatal(diags)
	}
	m, _ := prog.Stage("s").Attr("labels").Value.(ir.Map)
	if v, _ := m.Get("tier"); len(m) != 2 || v != "gold" {
		t.Errorf("labels = %#v", m)
	}
	dup := "source s: gen {\n  labels {\n    team = \"a\"\n    team = \"b\"\n  }\n}" + okTail
	if find(compileSrc(t, testConfig(), dup), lang.DuplicateAttribute) == nil {
		t.Error("a key set twice was not reported")
	}
}
