package compiler

import (
	"testing"

	"pipe.dev/pipe/lang"
)

// spanText returns the source text a diagnostic's span covers.
func spanText(src string, d lang.Diagnostic) string {
	return src[d.Span.Start.Offset:d.Span.End.Offset]
}

// TestTestRecordSpans checks that PIPE112 points at the part of a test
// record that does not fit: an unknown key, a wrong value however deeply
// nested, or the whole record when a field is missing.
func TestTestRecordSpans(t *testing.T) {
	const head = `schema R {
  id:   string
  tags: list<string>
  who:  { name: string, age: int? }
}
source s: bus { brokers = ["b"]  topic = "t"  schema = R }
sink o: out { delivery = at_least_once }
s -> o
test "t" {
  given s [`
	const tail = "]\n  expect o count 1\n}\n"
	cases := []struct{ name, rec, want string }{
		{"unknown key", `{ id: "a", tags: [], who: { name: "n" }, idd: 1 }`, "idd"},
		{"wrong value", `{ id: 7, tags: [], who: { name: "n" } }`, "7"},
		{"list element", `{ id: "a", tags: ["x", 2], who: { name: "n" } }`, "2"},
		{"nested value", `{ id: "a", tags: [], who: { name: "n", age: "old" } }`, `"old"`},
		{"nested key", `{ id: "a", tags: [], who: { nam: "n" } }`, "nam"},
		{"nested missing", `{ id: "a", tags: [], who: { age: 1 } }`, "{ age: 1 }"},
		{"missing", `{ id: "a", tags: [] }`, `{ id: "a", tags: [] }`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := head + c.rec + tail
			diags := compileSrc(t, testConfig(), src)
			d := find(diags, lang.BadTestRecord)
			if d == nil {
				t.Fatalf("no PIPE112 in:\n%v", diags)
			}
			if got := spanText(src, *d); got != c.want {
				t.Errorf("span covers %q, want %q (%s)", got, c.want, d.Message)
			}
		})
	}
}

// TestRouteEdgeNeedsPort checks that a flow out of a route names a port.
func TestRouteEdgeNeedsPort(t *testing.T) {
	src := `source s: gen {}
transform r: route {
  case big when n > 1
  else rest
}
sink o: out { delivery = at_least_once }
s -> r
r.big -> o
r.rest -> o
r -> o
`
	diags := compileSrc(t, testConfig(), src)
	d := find(diags, lang.BadEdge)
	if d == nil {
		t.Fatalf("no PIPE202 in:\n%v", diags)
	}
	if got := spanText(src, *d); got != "r" || d.Span.Start.Line != 10 {
		t.Errorf("PIPE202 at %d:%d %q, want the r of line 10", d.Span.Start.Line, d.Span.Start.Column, got)
	}
	if d.Detail != "ports: big, rest" {
		t.Errorf("detail %q", d.Detail)
	}
}

// TestDefArgErrorNotUnused checks that a def parameter read by the body is
// not reported unused when an instance gets a wrong or no argument, for
// expressions and ${param:x} alike, and that no other error follows.
func TestDefArgErrorNotUnused(t *testing.T) {
	for _, call := range []string{"stamp()", `stamp(sys = 5)`} {
		src := `source s: bus { brokers = ["b"]  topic = "t" }
def sink stamp(sys: string): bus {
  brokers = ["b"]
  topic  := params.sys
  password = "${param:sys}"
}
sink o: ` + call + `
s -> o
`
		diags := compileSrc(t, testConfig(), src)
		var codes []lang.Code
		for _, d := range diags {
			if d.Code != lang.UntypedSource && d.Code != lang.NoDelivery {
				codes = append(codes, d.Code)
			}
		}
		if len(codes) != 1 || codes[0] != lang.BadDefArgs {
			t.Errorf("%s: want only PIPE111, got:\n%v", call, diags)
		}
	}
}

// TestImportedFileLibraryOnly checks PIPE004 for an imported file with a
// stage, a flow, a test or a pipeline block: one error at the import path,
// every offending item related; its defs stay usable.
func TestImportedFileLibraryOnly(t *testing.T) {
	lib := `pipeline x {}
def transform big(): filter {
  where n > 100
}
sink hidden: out {}
test "t" {
  expect hidden count 0
}
`
	cfg := testConfig()
	cfg.ReadFile = func(path string) ([]byte, error) { return []byte(lib), nil }
	src := `import "lib.pipe" as x
source s: gen {}
transform f: x.big()
sink o: out { delivery = at_least_once }
s -> f -> o
`
	diags := compileSrc(t, cfg, src)
	if len(diags) != 1 || diags[0].Code != lang.ImportError {
		t.Fatalf("want one PIPE004, got:\n%v", diags)
	}
	d := diags[0]
	if got := spanText(src, d); got != `"lib.pipe"` {
		t.Errorf("span covers %q", got)
	}
	if len(d.Related) != 3 {
		t.Errorf("want 3 related spans (pipeline, sink, test), got %v", d.Related)
	}
}
