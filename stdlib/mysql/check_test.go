package mysql_test

import (
	"strconv"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestCompilerChecks: what is static in a mysql stage is reported by the
// compiler at the attribute, never showing the dsn.
func TestCompilerChecks(t *testing.T) {
	const head = "pipeline p {\n  delivery = exactly_once\n}\nsource s: generate {\n  count = 1\n  fields = { id = seq() }\n}\n"
	// sink is a mysql sink o of dsn with attrs.
	sink := func(dsn string, attrs ...string) string {
		return stdlibtest.Stage("sink", "o", "mysql", append([]string{"dsn = " + strconv.Quote(dsn)}, attrs...)...)
	}
	const env = "${env:DSN}"
	for _, tc := range []struct{ stage, want string }{
		{sink("root:pw@tcp(127.0.0.1:3306", `table = "t"`), "invalid dsn"},
		{sink("root@tcp(127.0.0.1:3306)/", `table = "t"`), "names no database"},
		{sink(env, `table = "a.b.c"`), "want table or database.table"},
		{sink(env, `table = "t"`, `batch = 0`), "batch must be positive"},
		{sink(env, `table = "t"`, `tls { cert = "c.pem" }`), "cert and key must be set together"},
		{sink(env, `table = "t"`, `mode = merge`), "merge"},
		{sink(env, `table = "`+strings.Repeat("x", 65)+`"`), "at most 64 characters"},
	} {
		src := head + tc.stage + "\ns -> o\n"
		_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "p.pipe", []byte(src))
		if !diags.HasErrors() {
			t.Errorf("%s: no error", tc.stage)
			continue
		}
		msg := diags.Error()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s:\n%s\nwant %q", tc.stage, msg, tc.want)
		}
		if strings.Contains(msg, "root:pw") {
			t.Errorf("the dsn shows: %s", msg)
		}
	}
	src := head + stdlibtest.Stage("source", "m", "mysql", `dsn = "${env:DSN}"`, `table = "t"`, `mode = timestamp`) +
		"m -> o\n" + sink(env, `table = "t"`) + "s -> o\n"
	_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "p.pipe", []byte(src))
	if !strings.Contains(diags.Error(), "mode timestamp needs timestamp_column") {
		t.Errorf("source: %s", diags.Error())
	}
}
