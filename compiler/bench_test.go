package compiler

import (
	"fmt"
	"strings"
	"testing"
)

// genPipeline writes a pipeline of n stages: a source, n-2 filters and
// maps in a chain, and a sink.
func genPipeline(n int) []byte {
	var b strings.Builder
	b.WriteString("pipeline { delivery = at_least_once }\nsource s0: gen {}\n")
	for i := 1; i < n-1; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&b, "transform s%d: filter { where n > %d }\n", i, i)
		} else {
			fmt.Fprintf(&b, "transform s%d: map { n := n + %d }\n", i, i)
		}
	}
	fmt.Fprintf(&b, "sink s%d: out {}\n", n-1)
	for i := 0; i < n-1; i++ {
		fmt.Fprintf(&b, "s%d -> s%d\n", i, i+1)
	}
	return []byte(b.String())
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		src := genPipeline(n)
		b.Run(fmt.Sprintf("stages=%d", n), func(b *testing.B) {
			cfg := testConfig()
			for b.Loop() {
				if prog, diags := Compile(cfg, "gen.pipe", src); prog == nil {
					b.Fatal(diags)
				}
			}
		})
	}
}
