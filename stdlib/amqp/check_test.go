package amqp

import (
	"fmt"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/core"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestCompilerChecks compiles pipelines with the rabbitmq components and
// checks what the compiler finds without a server: a routing key that is
// not a string, an exchange type that is none, an exactly_once sink fed
// by the source (it gives at least once), the source's metadata.
func TestCompilerChecks(t *testing.T) {
	const head = `
source in: rabbitmq {
  url   = "${env:AMQP_URL}"
  queue = "q"
}
`
	const gen = `
source g: generate {
  count  = 1
  fields = { id = seq(), region = "eu" }
}
`
	// sink returns gen into a rabbitmq sink out with attrs.
	sink := func(attrs ...string) string {
		return gen + stdlibtest.Stage("sink", "out", "rabbitmq", append([]string{`url = "${env:AMQP_URL}"`}, attrs...)...) + "g -> out\n"
	}
	for _, c := range []struct {
		name, text string
		want       string // "code line:col" of the one error, "" for none
	}{
		{"ok", head + `
transform m: map {
  again := meta.redelivered
  key   := meta.routing_key + "/" + meta.exchange
  id    := meta.message_id ?? "none"
}
sink out: rabbitmq {
  url          = "${env:AMQP_URL}"
  exchange     = "x"
  routing_key := "r." + key
  message_id  := id
  delivery     = at_least_once
  declare_exchange { type = topic }
}
in -> m -> out
`, ""},
		{"routing key not a string", sink(`routing_key := id`, `delivery = at_least_once`), "PIPE303 8:18"},
		{"exchange type", sink(`exchange = "x"`, `delivery = at_least_once`, `declare_exchange { type = topics }`), "PIPE305 10:29"},
		{"sink exactly once", sink(`delivery = exactly_once`), "PIPE204 8:14"},
		{"source into an exactly once sink", head + `
sink out: file {
  path     = "out.jsonl"
  delivery = exactly_once
}
in -> out
`, "PIPE204 9:14"},
		{"metadata of rabbitmq only", gen + `
transform m: map {
  again := meta.redelivered
}
sink out: file {
  path     = "out.jsonl"
  delivery = at_least_once
}
g -> m -> out
`, "PIPE115 8:12"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "p.pipe", []byte(c.text))
			var errs []string
			for _, d := range diags {
				if d.Severity == lang.Error {
					errs = append(errs, fmt.Sprintf("%s %d:%d %s", d.Code, d.Span.Start.Line, d.Span.Start.Column, d.Message))
				}
			}
			switch {
			case c.want == "" && len(errs) > 0:
				t.Fatalf("errors: %v", errs)
			case c.want != "" && (len(errs) != 1 || !strings.HasPrefix(errs[0], c.want)):
				t.Fatalf("errors %v, want one at %s", errs, c.want)
			}
		})
	}
}
