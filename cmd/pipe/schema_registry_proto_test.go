package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/protobuf"
	"pipe.dev/pipe/stdlib/schemareg/devreg"
)

// pipe schema pull writes a Protobuf subject as a .proto file and the file
// it imports under its import path, so that the pulled file compiles as a
// pipe schema; a JSON Schema subject as a .json file that types as one.
func TestSchemaPullProtobufJSON(t *testing.T) {
	reg, cl := devRegistry(t)
	ctx := t.Context()
	money := "syntax = \"proto3\";\npackage shop.common;\nmessage Money { string currency = 1; int64 units = 2; }\n"
	if _, err := cl.CreateSchema(ctx, "regproto-money", sr.Schema{Schema: money, Type: sr.TypeProtobuf}); err != nil {
		t.Fatal(err)
	}
	order := "syntax = \"proto3\";\npackage shop;\nimport \"shop/common/money.proto\";\nmessage Order { int64 id = 1; shop.common.Money total = 2; }\n"
	if _, err := cl.CreateSchema(ctx, "regproto-order-value", sr.Schema{Schema: order, Type: sr.TypeProtobuf,
		References: []sr.SchemaReference{{Name: "shop/common/money.proto", Subject: "regproto-money", Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	doc := `{"title":"shop.Doc","type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}`
	if _, err := cl.CreateSchema(ctx, "regproto-doc-value", sr.Schema{Schema: doc, Type: sr.TypeJSON}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, subject := range []string{"regproto-order-value", "regproto-doc-value"} {
		var out, errb bytes.Buffer
		if code := run([]string{"schema", "pull", "--registry", reg.URL(), "--subject", subject, "-o", dir}, nil, &out, &errb); code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
	}
	ty, err := protobuf.Compile(filepath.Join(dir, "regproto-order-value.proto"), "shop.Order", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ty.String(); got != "{id: int, total: {currency: string, units: int}?}" {
		t.Errorf("pulled .proto types as %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "shop", "common", "money.proto")); err != nil {
		t.Errorf("the import is not under its path: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "regproto-doc-value.json"))
	if err != nil {
		t.Fatal(err)
	}
	if jt, err := jsonschema.TypeOf(b); err != nil || jt.String() != "{id: int}" {
		t.Errorf("pulled JSON Schema types as %v, %v", jt, err)
	}
}

// devRegistry starts a development registry for the test and returns it
// with a client.
func devRegistry(t *testing.T) (*devreg.Registry, *sr.Client) {
	t.Helper()
	reg, err := devreg.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}
