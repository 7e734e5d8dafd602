package devreg

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

// PROTOBUF and JSON schemas must compile (Protobuf with its references)
// and pass the simple compatibility checks; what breaks names the field
// or property.
func TestProtobufAndJSONChecks(t *testing.T) {
	_, cl := start(t)
	ctx := t.Context()
	pb := func(s string, refs ...sr.SchemaReference) sr.Schema {
		return sr.Schema{Schema: s, Type: sr.TypeProtobuf, References: refs}
	}
	js := func(s string) sr.Schema { return sr.Schema{Schema: s, Type: sr.TypeJSON} }
	for _, c := range []struct {
		subject string
		s       sr.Schema
		want    string // "" accepted, else part of the refusal
	}{
		{"regproto-money.proto", pb(`syntax = "proto3"; package m; message Money { int64 units = 1; }`), ""},
		{"regproto-o-value", pb(`syntax = "proto3"; import "money.proto"; message O { int64 id = 1; m.Money total = 2; }`,
			sr.SchemaReference{Name: "money.proto", Subject: "regproto-money.proto", Version: 1}), ""},
		{"regproto-o-value", pb(`syntax = "proto3"; message O { int64 id = 1; m.Money total = 2; }`), "m.Money"},
		{"regproto-o-value", pb(`syntax = "proto3"; message O { int64 id = 1; string name = 3; }`), ""},
		{"regproto-o-value", pb(`syntax = "proto3"; message O { string id = 1; }`), "field id (number 1)"},
		{"regproto-o-value", pb(`syntax = "proto3"; message O { int64 id = 1 }`), "Invalid schema"},
		{"regproto-j-value", js(`{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}`), ""},
		{"regproto-j-value", js(`{"type":"object","properties":{"id":{"type":"integer"},"n":{"type":"string"}},"required":["id","n"]}`), `requires "n"`},
		{"regproto-j-value", js(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`), `property "id" changes its type`},
		{"regproto-j-value", js(`{"type":"object","properties":{"id":{"type":"integer"},"n":{"type":"string"}},"required":["id"]}`), ""},
		{"regproto-j-value", js(`{"type":"object","properties":{"id":{"type":7}}`), "Invalid schema"},
	} {
		_, err := cl.CreateSchema(ctx, c.subject, c.s)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %q refused: %v", c.subject, c.s.Schema, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %q: got %v, want %q", c.subject, c.s.Schema, err, c.want)
		}
	}
	if err := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "regproto-o-value"); len(err) == 1 && err[0].Err != nil {
		t.Fatal(err[0].Err)
	}
	if _, err := cl.CreateSchema(ctx, "regproto-o-value", pb(`syntax = "proto3"; message O { string id = 1; }`)); err != nil {
		t.Errorf("NONE refused: %v", err)
	}
}
