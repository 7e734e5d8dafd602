// Package jsonschema maps JSON Schema documents (draft 2020-12 and
// draft-07 object schemas) to pipe types, so that
// `schema Name from "file.schema.json"` declares a record type the compiler
// checks expressions against with no network, and validates JSON values
// against such a schema for the `json_schema` format.
package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	js "github.com/santhosh-tekuri/jsonschema/v6"

	"pipe.dev/pipe/lang/types"
)

// docURL names the document for the validator; $ref resolves within it.
const docURL = "file:///schema.json"

// Compile compiles a JSON Schema document for validation.
func Compile(src []byte) (*js.Schema, error) { return CompileWith(src, nil) }

// CompileWith compiles a JSON Schema document whose $refs may name the
// documents refs holds (by URL, or by a name relative to the document's,
// as a schema registry's references name them).
func CompileWith(src []byte, refs map[string][]byte) (*js.Schema, error) {
	doc, err := js.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		return nil, syntaxError(src, err)
	}
	c := js.NewCompiler()
	c.AssertFormat()
	c.UseLoader(noLoader{})
	for name, text := range refs {
		rdoc, err := js.UnmarshalJSON(bytes.NewReader(text))
		if err != nil {
			return nil, fmt.Errorf("reference %q: %w", name, syntaxError(text, err))
		}
		url := name
		if !strings.Contains(name, "://") {
			url = "file:///" + strings.TrimPrefix(name, "/")
		}
		if err := c.AddResource(url, rdoc); err != nil {
			return nil, fmt.Errorf("reference %q: %w", name, err)
		}
	}
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	s, err := c.Compile(docURL)
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), docURL, "the schema"))
	}
	return s, nil
}

// noLoader refuses every $ref to another document: a schema is read with
// no network.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("$ref to %s: only references within the file are read", url)
}

// syntaxError adds the line and column of a JSON syntax error.
func syntaxError(src []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(src, max(0, int(se.Offset)-1))
		return fmt.Errorf("%d:%d: %v", line, col, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		line, col := lineCol(src, len(src))
		return fmt.Errorf("%d:%d: unexpected end of JSON", line, col)
	}
	return err
}

func lineCol(src []byte, off int) (int, int) {
	off = min(off, len(src))
	line := 1 + bytes.Count(src[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(src[:off], '\n')
	return line, col
}

// TypeOf parses a JSON Schema document (checking that it compiles) and
// maps its top-level object schema to a record type:
//
//	"type": "object" with properties → record, fields in the file's order;
//	                                   a field not in "required" is T?
//	"type": "object" without them    → map<string, T> (T from
//	                                   additionalProperties, else any?)
//	"type": "array"                  → list<T> (T from items)
//	"string"                         → string; format date-time or date →
//	                                   timestamp; uuid and others → string
//	"integer", "number", "boolean"   → int, float, bool
//	["T", "null"], anyOf/oneOf with {"type": "null"} → T?
//	enum, const                      → the type of their values (string
//	                                   when all are strings), else any
//	$ref "#/..."                     → the referenced schema in the file
//	anything else (no type, unions)  → any
//
// The returned type keeps the document for the json_schema format.
func TypeOf(src []byte) (*types.Type, error) {
	if _, err := Compile(src); err != nil {
		return nil, err
	}
	root, err := parseOrdered(src)
	if err != nil {
		return nil, syntaxError(src, err)
	}
	m := &mapper{root: root}
	t, err := m.typeOf(root, nil)
	if err != nil {
		return nil, err
	}
	if t.Kind != types.Record || t.Optional {
		return nil, fmt.Errorf("the schema describes %s, not an object with properties: a pipe schema is a record", t)
	}
	t.Wire = &types.Wire{Format: "json_schema", Doc: bytes.Clone(src)}
	return t, nil
}

// object is a JSON object with its keys in document order.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) any {
	if o == nil {
		return nil
	}
	return o.vals[k]
}

// parseOrdered decodes JSON keeping the order of object keys.
func parseOrdered(src []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	return parseValue(dec)
}

func parseValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		o := &object{vals: map[string]any{}}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string)
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			if _, dup := o.vals[k]; !dup {
				o.keys = append(o.keys, k)
			}
			o.vals[k] = v
		}
		_, err := dec.Token()
		return o, err
	case json.Delim('['):
		var l []any
		for dec.More() {
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		_, err := dec.Token()
		return l, err
	}
	return tok, nil
}

type mapper struct {
	root any
}

// resolve follows a JSON pointer within the document.
func (m *mapper) resolve(ref string) (any, error) {
	if !strings.HasPrefix(ref, "#") {
		return nil, fmt.Errorf("$ref %q: only references within the file (#/...) are read", ref)
	}
	v := m.root
	for _, part := range strings.Split(strings.TrimPrefix(strings.TrimPrefix(ref, "#"), "/"), "/") {
		if part == "" {
			continue
		}
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		o, ok := v.(*object)
		if !ok || o.vals[part] == nil {
			return nil, fmt.Errorf("$ref %q does not resolve", ref)
		}
		v = o.vals[part]
	}
	return v, nil
}

func (m *mapper) typeOf(v any, open []string) (*types.Type, error) {
	switch v {
	case true:
		return types.AnyType.WithOptional(true), nil
	case false:
		return nil, errors.New("the schema false allows no value")
	}
	o, ok := v.(*object)
	if !ok {
		return nil, fmt.Errorf("a schema must be an object, not %v", v)
	}
	if ref, ok := o.get("$ref").(string); ok {
		for _, r := range open {
			if r == ref {
				return nil, fmt.Errorf("%s contains itself: pipe records are finite", ref)
			}
		}
		target, err := m.resolve(ref)
		if err != nil {
			return nil, err
		}
		return m.typeOf(target, append(open, ref))
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := o.get(k).([]any); ok {
			return m.union(alts, open)
		}
	}
	if all, ok := o.get("allOf").([]any); ok && len(all) == 1 {
		return m.typeOf(all[0], open)
	}
	if c, ok := o.vals["const"]; ok {
		return valuesType([]any{c}), nil
	}
	if e, ok := o.get("enum").([]any); ok {
		return valuesType(e), nil
	}
	var names []string
	switch tv := o.get("type").(type) {
	case string:
		names = []string{tv}
	case []any:
		for _, n := range tv {
			if s, ok := n.(string); ok {
				names = append(names, s)
			}
		}
	}
	nullable := false
	var rest []string
	for _, n := range names {
		if n == "null" {
			nullable = true
		} else {
			rest = append(rest, n)
		}
	}
	if len(rest) != 1 {
		if len(rest) == 0 && o.get("properties") != nil {
			rest = []string{"object"}
		} else {
			return types.AnyType.WithOptional(nullable || len(names) == 0), nil
		}
	}
	t, err := m.single(rest[0], o, open)
	if err != nil {
		return nil, err
	}
	return t.WithOptional(nullable), nil
}

func (m *mapper) single(name string, o *object, open []string) (*types.Type, error) {
	switch name {
	case "string":
		switch o.get("format") {
		case "date-time", "date":
			return types.TimestampType, nil
		}
		return types.StringType, nil
	case "integer":
		return types.IntType, nil
	case "number":
		return types.FloatType, nil
	case "boolean":
		return types.BoolType, nil
	case "array":
		items := o.get("items")
		if items == nil {
			return types.ListOf(types.AnyType.WithOptional(true)), nil
		}
		et, err := m.typeOf(items, open)
		if err != nil {
			return nil, fmt.Errorf("items: %w", err)
		}
		return types.ListOf(et), nil
	case "object":
		props, _ := o.get("properties").(*object)
		if props == nil {
			ap := o.get("additionalProperties")
			if ap == nil || ap == true {
				return types.MapOf(types.AnyType.WithOptional(true)), nil
			}
			et, err := m.typeOf(ap, open)
			if err != nil {
				return nil, fmt.Errorf("additionalProperties: %w", err)
			}
			return types.MapOf(et), nil
		}
		required := map[string]bool{}
		if req, ok := o.get("required").([]any); ok {
			for _, r := range req {
				if s, ok := r.(string); ok {
					required[s] = true
				}
			}
		}
		t := &types.Type{Kind: types.Record}
		for _, k := range props.keys {
			ft, err := m.typeOf(props.vals[k], open)
			if err != nil {
				return nil, fmt.Errorf("property %s: %w", k, err)
			}
			if !required[k] {
				ft = ft.WithOptional(true)
			}
			t.Fields = append(t.Fields, &types.Field{Name: k, Type: ft})
		}
		return t, nil
	}
	return types.AnyType.WithOptional(name == "null"), nil
}

// union maps anyOf/oneOf: one schema besides {"type": "null"} is that
// schema, optional; more are any.
func (m *mapper) union(alts []any, open []string) (*types.Type, error) {
	var rest []any
	nullable := false
	for _, a := range alts {
		if o, ok := a.(*object); ok && len(o.keys) == 1 && o.get("type") == "null" {
			nullable = true
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) != 1 {
		return types.AnyType.WithOptional(nullable), nil
	}
	t, err := m.typeOf(rest[0], open)
	if err != nil {
		return nil, err
	}
	return t.WithOptional(nullable || t.Optional), nil
}

// valuesType is the type of the values of an enum or const.
func valuesType(vals []any) *types.Type {
	var t *types.Type
	nullable := false
	for _, v := range vals {
		var k *types.Type
		switch x := v.(type) {
		case nil:
			nullable = true
			continue
		case string:
			k = types.StringType
		case bool:
			k = types.BoolType
		case json.Number:
			if _, err := x.Int64(); err == nil {
				k = types.IntType
			} else {
				k = types.FloatType
			}
		default:
			return types.AnyType.WithOptional(nullable)
		}
		if t != nil && t.Kind != k.Kind {
			return types.AnyType.WithOptional(true)
		}
		t = k
	}
	if t == nil {
		return types.AnyType.WithOptional(true)
	}
	return t.WithOptional(nullable)
}
