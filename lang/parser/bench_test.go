package parser_test

import (
	"fmt"
	"strings"
	"testing"

	"pipe.dev/pipe/lang/parser"
)

// generate returns a file with n stages: sources, filters, maps and sinks
// in chains of four, with their flows.
func generate(n int) []byte {
	var b strings.Builder
	b.WriteString("// generated\npipeline gen {\n  delivery = at_least_once\n}\n\n")
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "source s%d: kafka {\n  brokers = [\"${env:KAFKA_BROKERS}\"]\n  topic   = \"t%d\"\n  format  = json\n  poll    = 250ms\n}\n\n", i, i)
		case 1:
			fmt.Fprintf(&b, "transform f%d: filter {\n  where amount > %d && status == \"PAID\" // paid only\n}\n\n", i, i)
		case 2:
			fmt.Fprintf(&b, "transform m%d: map {\n  keep id, amount\n  total: float := amount * (1 + tax[\"rate\"])\n  tag          := upper(status)\n  on_error = retry(max = 3, backoff = 1s)\n}\n\n", i)
		case 3:
			fmt.Fprintf(&b, "sink k%d: postgres {\n  dsn   = \"${env:PG_DSN}\"\n  table = \"t%d\"\n  batch = 1MiB\n}\n\ns%d -> f%d -> m%d -> k%d\n\n", i, i, i-3, i-2, i-1, i)
		}
	}
	return []byte(b.String())
}

func BenchmarkParse(b *testing.B) {
	src := generate(1000)
	f, diags := parser.ParseFile("gen.pipe", src)
	if len(diags) > 0 || len(f.Items) != 1000+250+1 {
		b.Fatalf("generated file: %d items, %v", len(f.Items), diags)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		parser.ParseFile("gen.pipe", src)
	}
}

// BenchmarkParseParticiple parses the same file with participle alone, as
// on a syntax error.
func BenchmarkParseParticiple(b *testing.B) {
	src := generate(1000)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		parser.ParseWithParticiple("gen.pipe", src)
	}
}
