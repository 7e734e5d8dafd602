package exec

import (
	"context"
	"strings"
	"sync"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/core"
)

// subjectSink is a sink that, as a NATS sink would, publishes each record
// under a subject set per record (subject := expr).
type subjectSink struct {
	at  int
	mu  *sync.Mutex
	got *[]any
}

func (s *subjectSink) Open(context.Context) ([]stdlib.Position, error) { return nil, nil }
func (s *subjectSink) Write(_ context.Context, b []stdlib.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b {
		v, _ := b[i].Attr(s.at)
		*s.got = append(*s.got, v)
	}
	return nil
}
func (s *subjectSink) Checkpoint(context.Context, stdlib.Checkpoint) error { return nil }
func (s *subjectSink) Close(context.Context) error                         { return nil }

// TestDeclaredExprAttr runs a pipeline whose sink declares an attribute
// of its own as a per-record expression: the compiler types it and the
// executor hands each record's value (here reading meta) to the sink.
func TestDeclaredExprAttr(t *testing.T) {
	var (
		mu  sync.Mutex
		got []any
	)
	spec := &stdlib.Spec{Kind: stdlib.SinkKind, Name: "subjects",
		Params: []stdlib.Param{{Name: "subject", Type: stdlib.String, Expr: true}},
		NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			return &subjectSink{at: cfg.ExprIndex("subject"), mu: &mu, got: &got}, nil
		}}
	reg := stdlib.NewRegistry(core.GenerateSpec, spec)
	src := `
source gen: generate {
  count  = 3
  fields = { n = seq(), region = "eu" }
}
sink out: subjects {
  delivery = at_least_once
  subject := "orders." + region + "." + string(n) + "@" + string(meta.offset)
}
gen -> out
`
	prog, diags := compiler.Compile(&compiler.Config{Registry: reg}, "subject.pipe", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(t.Context(), p, &Config{Registry: reg, StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	want := []any{"orders.eu.1@0", "orders.eu.2@1", "orders.eu.3@2"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("subjects %v, want %v", got, want)
	}
	// An expression of another type than the attribute's is a compile error.
	bad := strings.Replace(src, `"orders." + region + "." + string(n) + "@" + string(meta.offset)`, "n", 1)
	if _, diags := compiler.Compile(&compiler.Config{Registry: reg}, "subject.pipe", []byte(bad)); !diags.HasErrors() || diags[0].Code != lang.AttributeType {
		t.Errorf("subject := n: %v, want PIPE303", diags)
	}
}
