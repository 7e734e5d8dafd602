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
	return &Validator{s: s}, nil
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
