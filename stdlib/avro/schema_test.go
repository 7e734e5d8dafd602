package avro

import (
	"fmt"
	"strings"
	"testing"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
)

// Each Avro kind maps to the pipe type the package documents.
func TestTypeOf(t *testing.T) {
	const avsc = `{"type": "record", "name": "R", "namespace": "n", "fields": [
	  {"name": "s", "type": "string"},
	  {"name": "i", "type": "int"},
	  {"name": "l", "type": "long"},
	  {"name": "f", "type": "float"},
	  {"name": "d", "type": "double"},
	  {"name": "b", "type": "boolean"},
	  {"name": "by", "type": "bytes"},
	  {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 4}},
	  {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
	  {"name": "opt", "type": ["null", "long"]},
	  {"name": "opt2", "type": ["string", "null"]},
	  {"name": "u", "type": ["string", "long"]},
	  {"name": "un", "type": ["null", "string", "long"]},
	  {"name": "a", "type": {"type": "array", "items": "string"}},
	  {"name": "m", "type": {"type": "map", "values": "double"}},
	  {"name": "rec", "type": {"type": "record", "name": "Sub", "fields": [{"name": "x", "type": "int"}]}},
	  {"name": "rec2", "type": "Sub"},
	  {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
	  {"name": "date", "type": {"type": "int", "logicalType": "date"}},
	  {"name": "tms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
	  {"name": "tus", "type": {"type": "long", "logicalType": "timestamp-micros"}},
	  {"name": "ltms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
	  {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
	  {"name": "tu", "type": {"type": "long", "logicalType": "time-micros"}},
	  {"name": "id", "type": {"type": "string", "logicalType": "uuid"}}
	]}`
	s, err := ParseSchema([]byte(avsc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := TypeOf(s)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"s": "string", "i": "int", "l": "int", "f": "float", "d": "float", "b": "bool",
		"by": "bytes", "fx": "bytes", "e": "string", "opt": "int?", "opt2": "string?",
		"u": "any", "un": "any?", "a": "list<string>", "m": "map<string, float>",
		"rec": "{x: int}", "rec2": "{x: int}", "dec": "string", "date": "timestamp",
		"tms": "timestamp", "tus": "timestamp", "ltms": "timestamp", "tm": "int", "tu": "int",
		"id": "string",
	}
	if len(got.Fields) != len(want) {
		t.Fatalf("got %d fields, want %d: %s", len(got.Fields), len(want), got)
	}
	for _, f := range got.Fields {
		if f.Type.String() != want[f.Name] {
			t.Errorf("field %s: got %s, want %s", f.Name, f.Type, want[f.Name])
		}
	}
	if got.Kind != types.Record {
		t.Errorf("kind %s", got.Kind)
	}
}

func TestTypeOfErrors(t *testing.T) {
	for _, c := range []struct{ avsc, want string }{
		{`"string"`, "not a record"},
		{`{"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}`, "contains itself"},
		{`{"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]}`, "unknown type"},
	} {
		s, err := ParseSchema([]byte(c.avsc))
		if err == nil {
			_, err = TypeOf(s)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.avsc, err, c.want)
		}
	}
}

// LoadFile reads the types a schema file uses from the files beside it,
// and names what it cannot find or parse.
func TestLoadFileReferences(t *testing.T) {
	files := map[string]string{
		"d/order.avsc":        `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"to","type":"shop.Address"},{"name":"c","type":"Country"}]}`,
		"d/shop.Address.avsc": `{"type":"record","name":"Address","namespace":"shop","fields":[{"name":"city","type":"string"}]}`,
		"d/Country.avsc":      `{"type":"enum","name":"Country","namespace":"shop","symbols":["DE"]}`,
		"d/missing.avsc":      `{"type":"record","name":"M","fields":[{"name":"x","type":"Nope"}]}`,
		"d/bad.avsc":          `{"type":"record","name":"B","fields":[{"name":"x","type":"Broken"}]}`,
		"d/Broken.avsc":       `{"type":"record","name":"Broken"}`,
	}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: no such file", p)
	}
	ty, err := LoadFile("d/order.avsc", read)
	if err != nil || ty.String() != "{to: {city: string}, c: string}" {
		t.Fatalf("got %v, %v", ty, err)
	}
	if s, err := WireSchema(ty); err != nil || s.(*havro.RecordSchema).FullName() != "shop.Order" {
		t.Errorf("wire schema: %v, %v", s, err)
	}
	if _, err := LoadFile("d/missing.avsc", read); err == nil || !strings.Contains(err.Error(), "type Nope is not defined in the schema: no file Nope.avsc beside it") {
		t.Errorf("missing reference: %v", err)
	}
	if _, err := LoadFile("d/bad.avsc", read); err == nil || !strings.Contains(err.Error(), "Broken.avsc: ") {
		t.Errorf("broken reference: %v", err)
	}
}
