package nats

import (
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/core"
	_ "pipe.dev/pipe/stdlib/kafka"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestCompilerChecks checks what the compiler rejects in NATS stages
// before anything runs: guarantees a component cannot give, attributes
// that exclude each other or are not subjects, and expressions of the
// wrong type.
func TestCompilerChecks(t *testing.T) {
	const url = `url = "nats://127.0.0.1:4222"`
	source := func(attrs ...string) string {
		return stdlibtest.Stage("source", "in", "nats", append([]string{url}, attrs...)...)
	}
	src := source(`stream = "S"`, `consumer = "c"`)
	// sink returns src into a sink out of component with attrs.
	sink := func(component string, attrs ...string) string {
		return src + stdlibtest.Stage("sink", "out", component, append([]string{url}, attrs...)...) + "in -> out\n"
	}
	discard := stdlibtest.Stage("sink", "out", "discard") + "in -> out\n"
	cases := []struct {
		name, text string
		code       lang.Code
		msg        string
	}{
		{"core sink is at most once", sink("nats_core", `subject = "a.b"`, `delivery = exactly_once`),
			lang.DeliveryUnsupported, "cannot honour exactly_once"},
		{"core sink is not at least once either", sink("nats_core", `subject = "a.b"`, `delivery = at_least_once`),
			lang.DeliveryUnsupported, "cannot honour at_least_once"},
		{"create_stream needs stream", sink("nats", `subject = "a.b"`, `create_stream = true`, `delivery = exactly_once`),
			lang.BadAttributeValue, "create_stream needs stream"},
		{"no wildcard to publish on", sink("nats", `subject = "a.*"`, `delivery = exactly_once`),
			lang.BadAttributeValue, "not a subject to publish on"},
		{"subject is a string", sink("nats", `subject := 42`, `delivery = exactly_once`), 0, "subject"},
		{"credentials stay out of the url",
			stdlibtest.Stage("source", "in", "nats", `url = "nats://u:p@127.0.0.1:4222"`, `stream = "S"`, `consumer = "c"`) + discard,
			lang.BadAttributeValue, "url holds credentials"},
		{"one way to authenticate",
			source(`stream = "S"`, `consumer = "c"`, `token = "${env:T}"`, `user = "u"`, `password = "${env:P}"`) + discard,
			lang.BadAttributeValue, "set one of"},
		{"meta.subject only from nats", `source in: kafka {
  brokers = ["k:9092"]
  topic   = "t"
}
transform m: map {
  s := meta.subject
}
sink out: discard {}
in -> m -> out
`, lang.UndeclaredMeta, "subject"},
		{"stream names have no dots", source(`stream = "a.b"`, `consumer = "c"`) + discard,
			lang.BadAttributeValue, "stream must be"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "x.pipe", []byte(c.text))
			for _, d := range diags.Errors() {
				if (c.code == 0 || d.Code == c.code) && strings.Contains(d.Message, c.msg) {
					return
				}
			}
			t.Fatalf("want an error %s %q, got:\n%s", c.code, c.msg, diags)
		})
	}
	// The same stages, well formed, compile.
	ok := src + `transform m: map {
  subject := meta.subject
  seq     := meta.offset
}
sink out: nats {
  url           = "nats://127.0.0.1:4222"
  stream        = "OUT"
  create_stream = true
  subjects      = ["copy.>"]
  subject      := "copy." + subject
  headers      := { "seq": string(seq) }
  delivery      = exactly_once
}
sink core: nats_core {
  url      = "nats://127.0.0.1:4222"
  delivery = at_most_once
}
in -> m -> [out, core]
`
	if _, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "ok.pipe", []byte(ok)); diags.HasErrors() {
		t.Fatalf("errors:\n%s", diags.Errors())
	}
}
