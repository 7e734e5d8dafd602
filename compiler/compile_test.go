package compiler

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pipe.dev/pipe/lang"
)

// chunk is one case of a chunked error file.
type chunk struct {
	name   string
	line   int // first line in the chunked file
	src    []byte
	expect map[string]bool // "line:PIPExxx"
	codes  map[lang.Code]bool
}

var markRx = regexp.MustCompile(`###((?:\s+PIPE\d{3})+)\s*$`)

// readChunks splits a chunked file on "---" lines and reads the
// "### PIPExxx ..." markers (blanked out of the source, keeping offsets).
func readChunks(t *testing.T, path string) []chunk {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []chunk
	lines := strings.Split(string(data), "\n")
	start := 0
	flush := func(end int) {
		c := chunk{name: fmt.Sprintf("%s:%d", filepath.Base(path), start+1), line: start + 1,
			expect: map[string]bool{}, codes: map[lang.Code]bool{}}
		var b strings.Builder
		for i := start; i < end; i++ {
			l := lines[i]
			if m := markRx.FindStringSubmatchIndex(l); m != nil {
				for _, f := range strings.Fields(l[m[2]:m[3]]) {
					code, ok := lang.ParseCode(f)
					if !ok {
						t.Fatalf("%s:%d: unknown code %s", path, i+1, f)
					}
					c.expect[fmt.Sprintf("%d:%s", i-start+1, code)] = true
					c.codes[code] = true
				}
				l = l[:m[0]] + strings.Repeat(" ", m[1]-m[0])
			}
			b.WriteString(l)
			b.WriteByte('\n')
		}
		c.src = []byte(b.String())
		out = append(out, c)
	}
	for i, l := range lines {
		if strings.TrimSpace(l) == "---" {
			flush(i)
			start = i + 1
		}
	}
	flush(len(lines))
	return out
}

func testConfig() *Config {
	return &Config{
		Registry: testRegistry(),
		ReadFile: func(p string) ([]byte, error) { return os.ReadFile(filepath.Join("testdata", p)) },
	}
}

func TestErrors(t *testing.T) {
	for _, c := range readChunks(t, "testdata/errors.pipe") {
		t.Run(c.name, func(t *testing.T) {
			_, diags := Compile(testConfig(), "main.pipe", c.src)
			got := map[string]bool{}
			for _, d := range diags {
				if d.Span.File != "main.pipe" {
					t.Errorf("diagnostic outside the chunk: %v", d)
					continue
				}
				if d.Severity == lang.Warning && !c.codes[d.Code] {
					continue
				}
				got[fmt.Sprintf("%d:%s", d.Span.Start.Line, d.Code)] = true
			}
			for k := range c.expect {
				if !got[k] {
					t.Errorf("missing %s (chunk line %d)", k, c.line)
				}
			}
			for k := range got {
				if !c.expect[k] {
					t.Errorf("unexpected %s", k)
				}
			}
			if t.Failed() {
				for _, d := range diags {
					t.Log(d)
				}
			}
		})
	}
}

// TestEveryCodeTested checks that the chunks cover every code the compiler
// reports (the rest is tested by name below).
func TestEveryCodeTested(t *testing.T) {
	seen := map[lang.Code]bool{}
	for _, c := range readChunks(t, "testdata/errors.pipe") {
		for code := range c.codes {
			seen[code] = true
		}
	}
	separately := []lang.Code{lang.Internal, lang.ImportError}
	emitted := []lang.Code{
		lang.ImportError, lang.BadInterpolation, lang.UnknownName, lang.DuplicateName, lang.ReservedName,
		lang.UnknownField, lang.FanInMismatch, lang.SinkSchemaMismatch, lang.BadMapKey, lang.BadDefArgs,
		lang.BadTestRecord, lang.Cycle, lang.BadEdge, lang.DeadLetterNotSink, lang.DeliveryUnsupported,
		lang.NoInput, lang.NoSource, lang.UnknownComponent, lang.UnknownAttribute, lang.AttributeType,
		lang.MissingAttribute, lang.BadAttributeValue, lang.MisplacedItem, lang.DuplicateAttribute,
		lang.SecretNotAllowed, lang.StageNotInFlow, lang.DeadEnd, lang.SinkUnreachable, lang.PortUnwired,
		lang.RouteNoElse, lang.CrossProduct, lang.NoDelivery, lang.ConstantPredicate, lang.DuplicateCase,
		lang.SkipWithoutDLQ, lang.RetryWithoutThen, lang.FieldRetyped, lang.ShadowsBuiltin, lang.AnyResult,
		lang.UntypedSource, lang.NonDeterministic, lang.HardcodedSecret, lang.InsecureTLS, lang.Unused,
		lang.UndeclaredMeta,
	}
	for _, code := range emitted {
		if !seen[code] && !slices.Contains(separately, code) {
			t.Errorf("code %s (%s) has no case in testdata/errors.pipe", code, code.Name())
		}
	}
}

// TestNameSpans checks that diagnostics about a declared name point at the
// name itself (the parser gives every name its span), also where the same
// word appears before it in a comment or as the stage's component.
func TestNameSpans(t *testing.T) {
	src := `schema Point { y: int }
schema
  // Point was a list once
  Point { x: int }

source stdin: stdin { format = json }
sink
  // stdin was the sink's name
  stdin: stdout { format = json }
stdin -> stdin

def transform twice(n: int): map { }
def transform
  // twice uses twice
  twice(n: int): map { }
`
	_, diags := Compile(testConfig(), "main.pipe", []byte(src))
	want := map[string]string{ // name → line:col of the duplicate
		"schema": "4:3", "stage": "9:3", "def": "15:3",
	}
	got := map[string]string{}
	for _, d := range diags {
		if d.Code != lang.DuplicateName {
			continue
		}
		for what := range want {
			if strings.HasPrefix(d.Message, what) {
				got[what] = fmt.Sprintf("%d:%d", d.Span.Start.Line, d.Span.Start.Column)
				if d.Span.End.Offset-d.Span.Start.Offset != map[string]int{"schema": 5, "stage": 5, "def": 5}[what] {
					t.Errorf("%s: span %v is not the name's", what, d.Span)
				}
			}
		}
	}
	for what, at := range want {
		if got[what] != at {
			t.Errorf("duplicate %s reported at %q, want %q", what, got[what], at)
			for _, d := range diags {
				t.Log(d)
			}
		}
	}
}
