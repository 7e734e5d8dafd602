package jsonschema

import (
	"strings"
	"testing"
)

// Each JSON Schema construct maps to the pipe type the package documents.
func TestTypeOf(t *testing.T) {
	const doc = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "qty", "price", "ok", "at", "day", "uid", "tags", "sub", "color", "ref", "nref"],
  "properties": {
    "id": {"type": "string"},
    "qty": {"type": "integer", "minimum": 0},
    "price": {"type": "number"},
    "ok": {"type": "boolean"},
    "at": {"type": "string", "format": "date-time"},
    "day": {"type": "string", "format": "date"},
    "uid": {"type": "string", "format": "uuid"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "sub": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}, "y": {"type": "string"}}},
    "color": {"enum": ["red", "green"]},
    "ref": {"$ref": "#/$defs/Money"},
    "nref": {"anyOf": [{"$ref": "#/$defs/Money"}, {"type": "null"}]},
    "opt": {"type": "string"},
    "nullable": {"type": ["integer", "null"]},
    "anything": {},
    "mixed": {"type": ["string", "integer"]},
    "dict": {"type": "object", "additionalProperties": {"type": "number"}},
    "obj": {"type": "object"},
    "num": {"const": 3},
    "list": {"type": "array"}
  },
  "$defs": {
    "Money": {"type": "object", "required": ["currency", "units"],
      "properties": {"currency": {"type": "string"}, "units": {"type": "integer"}}}
  }
}`
	got, err := TypeOf([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, typ string }{
		{"id", "string"}, {"qty", "int"}, {"price", "float"}, {"ok", "bool"}, {"at", "timestamp"},
		{"day", "timestamp"}, {"uid", "string"}, {"tags", "list<string>"}, {"sub", "{x: int, y: string?}"},
		{"color", "string"}, {"ref", "{currency: string, units: int}"}, {"nref", "{currency: string, units: int}?"},
		{"opt", "string?"}, {"nullable", "int?"}, {"anything", "any?"}, {"mixed", "any?"},
		{"dict", "map<string, float>?"}, {"obj", "map<string, any?>?"}, {"num", "int?"}, {"list", "list<any?>?"},
	}
	if len(got.Fields) != len(want) {
		t.Fatalf("got %d fields, want %d: %s", len(got.Fields), len(want), got)
	}
	for i, f := range got.Fields {
		if f.Name != want[i].name || f.Type.String() != want[i].typ {
			t.Errorf("field %d: got %s %s, want %s %s", i, f.Name, f.Type, want[i].name, want[i].typ)
		}
	}
	if got.Wire == nil || got.Wire.Format != "json_schema" {
		t.Errorf("wire %+v", got.Wire)
	}
	// draft-07 with definitions.
	d7 := `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["a"],
	  "properties": {"a": {"$ref": "#/definitions/A"}}, "definitions": {"A": {"type": "integer"}}}`
	if got, err := TypeOf([]byte(d7)); err != nil || got.String() != "{a: int}" {
		t.Errorf("draft-07: %v %v", got, err)
	}
}

func TestTypeOfErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"{\n  \"type\": \"object\",\n  \"properties\": {,}\n}", "3:18: invalid character ','"},
		{`{"type": "object", "properties": {"a": {"type": "strin"}}}`, "strin"},
		{`{"type": "array", "items": {"type": "string"}}`, "not an object with properties"},
		{`{"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}, "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}}`, "contains itself"},
		{`{"type": "object", "properties": {"a": {"$ref": "other.json"}}}`, "only references within the file"},
	} {
		_, err := TypeOf([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.doc, err, c.want)
		}
	}
}

// A value breaking the schema is an error naming where in the value.
func TestValidate(t *testing.T) {
	typ, err := TypeOf([]byte(`{"type": "object", "required": ["id"], "properties": {
	  "id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1},
	  "at": {"type": "string", "format": "date-time"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValidator(typ)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate([]byte(`{"id": "a", "qty": 2, "at": "2026-01-02T03:04:05Z"}`)); err != nil {
		t.Errorf("valid: %v", err)
	}
	for _, c := range []struct{ doc, want string }{
		{`{"qty": 2}`, "at /: missing property 'id'"},
		{`{"id": "a", "qty": 0}`, "at /qty: minimum: got 0, want 1"},
		{`{"id": "a", "at": "yesterday"}`, "at /at: 'yesterday' is not valid date-time"},
		{`{"id": 1}`, "at /id: got number, want string"},
		{`{"id": `, "unexpected EOF"},
	} {
		err := v.Validate([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.doc, err, c.want)
		}
	}
}
