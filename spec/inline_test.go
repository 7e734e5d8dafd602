package spec

import (
	"testing"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec/testrun"
	"pipe.dev/pipe/stdlib"
)

// TestInlineTests runs, on the real executor, the inline tests of every
// pipe block of spec.md and of every clean conformance case: the examples
// of the reference mean what they say.
func TestInlineTests(t *testing.T) {
	inputs := sources(t, func(c *conformanceCase) bool { return len(c.want) == 0 && c.skip == "" }, "pipe")
	ran := 0
	for _, in := range inputs {
		prog, ds := compileDir(t, in.files)
		if prog == nil || len(prog.Tests) == 0 {
			continue // compile failures are reported by TestSpecBlocks and TestConformance
		}
		ran += len(prog.Tests)
		t.Run(in.name, func(t *testing.T) {
			p, err := plan.Build(prog)
			if err != nil {
				t.Fatalf("%v\n%s", err, ds.Error())
			}
			for _, r := range testrun.Run(t.Context(), p, &testrun.Options{Registry: stdlib.Default}) {
				if r.Err != nil {
					t.Errorf("test %q: %v", r.Test, r.Err)
				}
				for _, f := range r.Failures {
					t.Errorf("test %q failed: %+v", r.Test, f)
				}
			}
		})
	}
	if ran < 3 {
		t.Errorf("only %d inline tests ran; the reference and the suite should hold more", ran)
	}
}
