package parser_test

import (
	"math/rand/v2"
	"testing"

	"pipe.dev/pipe/lang/parser"
)

func TestScratch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	clean := 0
	for i := 0; i < 300; i++ {
		g := &gen{r: r}
		src := g.file()
		_, d := parser.ParseFile("g", []byte(src))
		if !d.HasErrors() {
			clean++
		} else if i%20 == 0 {
			t.Logf("%v\n%s", d, src)
		}
	}
	t.Logf("clean %d/300", clean)
}
