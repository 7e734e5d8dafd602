package exprs

import (
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib/fn"
)

const nestedSrc = `customer.vip || customer.id == "c9"`

func BenchmarkRunNested(b *testing.B) {
	p, err := Compile(nestedSrc, Context{Kind: plan.AssignExpr, Input: orderType}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	benchProgram(b, p, orderRecord())
}

// benchProgram measures p running on rec.
func benchProgram(b *testing.B, p *Program, rec map[string]any) {
	var v vm.VM
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Run(&v, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunNestedReflect measures the same expression without the fetch
// patch: expr reads nested map fields through reflection.
func BenchmarkRunNestedReflect(b *testing.B) {
	opts := append([]expr.Option{expr.Env(runtimeEnv(Context{Input: orderType}))}, fn.Options(nil)...)
	prog, err := expr.Compile(nestedSrc, opts...)
	if err != nil {
		b.Fatal(err)
	}
	rec := orderRecord()
	var v vm.VM
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Run(prog, rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, is := Check(`customer.vip || (customer.tier ?? "") == "gold"`, Context{Kind: plan.AssignExpr, Input: orderType}); len(is) > 0 {
			b.Fatal(is)
		}
	}
}

// BenchmarkCheckerReuse is BenchmarkCheck through one Checker, as the
// compiler checks a file's expressions: the typed environment and expr's
// configuration are built once.
func BenchmarkCheckerReuse(b *testing.B) {
	var c Checker
	b.ReportAllocs()
	for b.Loop() {
		if _, is := c.Check(`customer.vip || (customer.tier ?? "") == "gold"`, Context{Kind: plan.AssignExpr, Input: orderType}); len(is) > 0 {
			b.Fatal(is)
		}
	}
}
