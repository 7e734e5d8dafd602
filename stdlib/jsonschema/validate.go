package jsonschema

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	js "github.com/santhosh-tekuri/jsonschema/v6"

	"pipe.dev/pipe/lang/types"
)

// Validator validates JSON messages against the schema a type read by
// TypeOf keeps.
type Validator struct {
	s *js.Schema
	// absent are the top-level properties that are not required: a null
	// of one is left out when encoding.
	absent map[string]bool
}

// NewValidator returns the validator of t's JSON Schema.
func NewValidator(t *types.Type) (*Validator, error) {
	if t == nil || t.Wire == nil || t.Wire.Format != "json_schema" {
		return nil, errors.New(`json_schema needs a schema read from a JSON Schema file: schema X from "x.schema.json"`)
	}
	s, err := Compile(t.Wire.Doc)
	if err != nil {
		return nil, err
	}
	v := &Validator{s: s, absent: map[string]bool{}}
	for _, f := range t.Fields {
		v.absent[f.Name] = true
	}
	if root, err := parseOrdered(t.Wire.Doc); err == nil {
		if o, ok := root.(*object); ok {
			if req, ok := o.get("required").([]any); ok {
				for _, r := range req {
					if name, ok := r.(string); ok {
						delete(v.absent, name)
					}
				}
			}
		}
	}
	return v, nil
}

// OmitNulls returns rec without the nulls of properties that are not
// required (JSON Schema tells an absent property from a null one; a pipe
// record does not), or rec itself when it has none.
func (v *Validator) OmitNulls(rec map[string]any) map[string]any {
	var out map[string]any
	for k, x := range rec {
		if x == nil && v.absent[k] {
			if out == nil {
				out = make(map[string]any, len(rec))
				for k2, x2 := range rec {
					out[k2] = x2
				}
			}
			delete(out, k)
		}
	}
	if out == nil {
		return rec
	}
	return out
}

// Validate reports the first place where the JSON message data breaks the
// schema: "at /amount: minimum: got -1, want 0".
func (v *Validator) Validate(data []byte) error {
	inst, err := js.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	err = v.s.Validate(inst)
	var ve *js.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	msg := ve.Error()
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "at '") {
		msg = msg[i+2:]
	}
	return fmt.Errorf("json schema: at /%s: %s", strings.Join(ve.InstanceLocation, "/"), msg)
}
