package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/monitor"
	"pipe.dev/pipe/stdlib"
)

// TestTop runs a bounded pipeline with a server and reads it with
// pipe top --once: its counts, dead-lettered records, lag and last error.
func TestTop(t *testing.T) {
	src := `
pipeline top_test {
  checkpoint = 50ms
  delivery   = at_least_once
}
source gen: generate {
  count  = 300
  fields = { id = seq() }
}
transform calc: map {
  n := to_int(id % 3 == 0 ? "x" : "1")
  on_error = dead_letter(dlq)
}
sink out: discard {}
sink dlq: discard {}
gen -> calc -> out
`
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "top.pipe", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	h := exec.NewHandle()
	srv, err := monitor.Listen(monitor.Options{Token: "tok"}, h, p)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	if err := exec.Run(t.Context(), p, &exec.Config{Handle: h, StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOP_TOKEN", "tok")
	var out, errb bytes.Buffer
	if code := run([]string{"top", "--once", "--token", "${env:TOP_TOKEN}", srv.URL()}, nil, &out, &errb); code != exitOK {
		t.Fatalf("pipe top: exit %d: %s", code, errb.String())
	}
	got := out.String()
	for _, want := range []string{
		"top_test  finished  health unhealthy",
		"gen  source: generate      1       300   300       0       0              0  0 records",
		"calc    transform: map      1       300   200       0     100            100",
		`calc: last error`, `cannot convert "x" to int`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("pipe top does not show %q:\n%s", want, got)
		}
	}
	if code := run([]string{"top", "--once", srv.URL()}, nil, &out, &errb); code != exitFindings || !strings.Contains(errb.String(), "401") {
		t.Errorf("pipe top without the token: exit %d: %s", code, errb.String())
	}
}
