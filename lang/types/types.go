// Package types is the value type model of pipe records: the types a schema
// declares, the compiler infers for each stage's output, the plan records,
// and the runtime and connectors use to decode and encode values.
//
// Runtime representation of a value of each kind (what the executor and
// every connector pass around in stdlib.Record.Value):
//
//	String    string
//	Int       int64
//	Float     float64
//	Bool      bool
//	Timestamp time.Time
//	Bytes     []byte
//	List      []any
//	Map       map[string]any
//	Record    map[string]any   (field name -> value; an absent optional field is nil or missing)
//	Any       any of the above
package types

import (
	"fmt"
	"strings"
)

// Kind is the kind of a type.
type Kind string

const (
	Any       Kind = "any"
	String    Kind = "string"
	Int       Kind = "int"
	Float     Kind = "float"
	Bool      Kind = "bool"
	Timestamp Kind = "timestamp"
	Bytes     Kind = "bytes"
	List      Kind = "list"
	Map       Kind = "map"
	Record    Kind = "record"
	// Secret is the type of a secret run-time parameter (param k: secret):
	// never a field's; only key arguments (hmac_sha256) and reveal take it.
	Secret Kind = "secret"
)

// Scalars maps the scalar type names of the language to their kinds.
var Scalars = map[string]Kind{
	"any": Any, "string": String, "int": Int, "float": Float, "bool": Bool,
	"timestamp": Timestamp, "bytes": Bytes,
}

// Type is a value type. Types are immutable once built; share them freely.
type Type struct {
	Kind     Kind     `json:"kind"`
	Optional bool     `json:"optional,omitempty"` // T?: the value may be null/absent
	Elem     *Type    `json:"elem,omitempty"`     // List and Map element (map keys are strings)
	Fields   []*Field `json:"fields,omitempty"`   // Record fields, in declaration order
	Name     string   `json:"name,omitempty"`     // schema name, when the type came from one
	// Wire is the schema file a record type was read from, for the
	// formats that encode by more than the type (protobuf, json_schema).
	Wire *Wire `json:"wire,omitempty"`
}

// Wire is a schema as a format's codec needs it at run time, self-contained
// so that a plan does not read the schema file again.
type Wire struct {
	// Format is the format the schema describes: "protobuf",
	// "json_schema" or "avro" (Doc then holds the .avsc texts, see
	// stdlib/avro.LoadFile).
	Format string `json:"format"`
	// Name is the full name of the protobuf message.
	Name string `json:"name,omitempty"`
	// Doc is the schema: a serialized FileDescriptorSet holding the
	// message's file and its imports (protobuf), or the JSON Schema
	// document (json_schema).
	Doc []byte `json:"doc"`
	// File is the schema file's path as the pipeline names it, for
	// messages (avro).
	File string `json:"file,omitempty"`
	// Files are the .proto files as written, by the path the compiler read
	// them under (the message's file as Main, its imports as imported):
	// what a sink registers with a schema registry. The well-known
	// google/protobuf files are built in and not kept.
	Files map[string]string `json:"files,omitempty"`
	// Main is the name of the message's .proto file in Files.
	Main string `json:"main,omitempty"`
}

// Field is a named field of a record type.
type Field struct {
	Name string `json:"name"`
	Type *Type  `json:"type"`
}

// Common unnamed types.
var (
	AnyType       = &Type{Kind: Any}
	StringType    = &Type{Kind: String}
	IntType       = &Type{Kind: Int}
	FloatType     = &Type{Kind: Float}
	BoolType      = &Type{Kind: Bool}
	TimestampType = &Type{Kind: Timestamp}
	BytesType     = &Type{Kind: Bytes}
	SecretType    = &Type{Kind: Secret}
)

// ListOf returns list<elem>.
func ListOf(elem *Type) *Type { return &Type{Kind: List, Elem: elem} }

// MapOf returns map<string, elem>.
func MapOf(elem *Type) *Type { return &Type{Kind: Map, Elem: elem} }

// RecordOf returns a record type with the given fields.
func RecordOf(fields ...*Field) *Type { return &Type{Kind: Record, Fields: fields} }

// Field returns the field called name, or nil.
func (t *Type) Field(name string) *Field {
	if t == nil {
		return nil
	}
	for _, f := range t.Fields {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// WithOptional returns a copy of t with Optional set to opt.
func (t *Type) WithOptional(opt bool) *Type {
	if t.Optional == opt {
		return t
	}
	c := *t
	c.Optional = opt
	return &c
}

// String formats t in the language's own syntax.
func (t *Type) String() string {
	if t == nil {
		return "any"
	}
	var s string
	switch t.Kind {
	case List:
		s = "list<" + t.Elem.String() + ">"
	case Map:
		s = "map<string, " + t.Elem.String() + ">"
	case Record:
		if t.Name != "" {
			s = t.Name
			break
		}
		parts := make([]string, len(t.Fields))
		for i, f := range t.Fields {
			parts[i] = f.Name + ": " + f.Type.String()
		}
		s = "{" + strings.Join(parts, ", ") + "}"
	default:
		s = string(t.Kind)
	}
	if t.Optional {
		s += "?"
	}
	return s
}

// Equal reports whether a and b describe the same values (names ignored).
func Equal(a, b *Type) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Kind != b.Kind || a.Optional != b.Optional {
		return false
	}
	switch a.Kind {
	case List, Map:
		return Equal(a.Elem, b.Elem)
	case Record:
		if len(a.Fields) != len(b.Fields) {
			return false
		}
		for i := range a.Fields {
			if a.Fields[i].Name != b.Fields[i].Name || !Equal(a.Fields[i].Type, b.Fields[i].Type) {
				return false
			}
		}
	}
	return true
}

// AssignableTo reports whether every value of type v is a valid value of
// type t: same kinds (int widens to float, anything to any), records
// structurally with t's fields a subset of v's (extra fields allowed),
// non-optional into optional.
func AssignableTo(v, t *Type) error {
	if t == nil || t.Kind == Any || v == nil || v.Kind == Any {
		return nil
	}
	if v.Optional && !t.Optional {
		return fmt.Errorf("%s may be null, %s may not", v, t)
	}
	if v.Kind == Int && t.Kind == Float {
		return nil
	}
	if v.Kind != t.Kind {
		return fmt.Errorf("%s is not %s", v.WithOptional(false), t.WithOptional(false))
	}
	switch t.Kind {
	case List, Map:
		return AssignableTo(v.Elem, t.Elem)
	case Record:
		for _, tf := range t.Fields {
			vf := v.Field(tf.Name)
			if vf == nil {
				if tf.Type.Optional {
					continue
				}
				return fmt.Errorf("field %q is missing", tf.Name)
			}
			if err := AssignableTo(vf.Type, tf.Type); err != nil {
				return fmt.Errorf("field %q: %v", tf.Name, err)
			}
		}
	}
	return nil
}
