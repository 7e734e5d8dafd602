package compiler

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"pipe.dev/pipe/compiler/plan"
)

var update = flag.Bool("update", false, "rewrite golden files")

func buildPlan(t *testing.T, path string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prog, diags := Compile(testConfig(), "golden.pipe", src)
	if prog == nil {
		t.Fatalf("compile failed:\n%v", diags)
	}
	for _, d := range diags {
		t.Errorf("unexpected diagnostic: %v", d)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	b, err := plan.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPlanGolden(t *testing.T) {
	got := buildPlan(t, "testdata/golden.pipe")
	const golden = "testdata/golden.plan.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("plan differs from %s (run with -update after checking the change):\n%s", golden, got)
	}
	p, err := plan.Unmarshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := plan.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, again) {
		t.Error("plan does not survive Unmarshal then Marshal unchanged")
	}
}

func TestPlanDeterministic(t *testing.T) {
	first := buildPlan(t, "testdata/golden.pipe")
	for i := 0; i < 20; i++ {
		if got := buildPlan(t, "testdata/golden.pipe"); !bytes.Equal(first, got) {
			t.Fatalf("run %d gave a different plan", i)
		}
	}
}
