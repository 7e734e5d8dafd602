package spec

import (
	"slices"
	"testing"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/format"
)

// TestFormatConformance formats every source file of every conformance
// case that parses and every pipe block of spec.md: formatting is
// idempotent, and the formatted files compile to the same diagnostic codes
// as the originals (formatting never changes meaning).
func TestFormatConformance(t *testing.T) {
	inputs := sources(t, func(*conformanceCase) bool { return true }, "pipe", "pipe-error")
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			formatted := map[string][]byte{}
			for name, src := range in.files {
				out, ds := format.Source(name, src)
				if ds.HasErrors() {
					return // a syntax error case: nothing to format
				}
				again, ds := format.Source(name, out)
				if ds.HasErrors() {
					t.Fatalf("%s: the formatted file does not parse:\n%s\n%s", name, ds.Error(), out)
				}
				if string(again) != string(out) {
					t.Errorf("%s: formatting is not idempotent\nonce:\n%s\ntwice:\n%s", name, out, again)
				}
				formatted[name] = out
			}
			_, before := compileDir(t, in.files)
			_, after := compileDir(t, formatted)
			if b, a := codes(before), codes(after); !slices.Equal(b, a) {
				t.Errorf("formatting changed the diagnostics: before %v, after %v\n%s", b, a, formatted[mainFile])
			}
		})
	}
}

func codes(ds lang.Diagnostics) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Code.String()
	}
	slices.Sort(out)
	return out
}
