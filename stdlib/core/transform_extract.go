package core

import (
	"context"
	"fmt"
	"strings"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// ExtractSpec is the extract transform: one field, which must hold a
// record, becomes the whole record — like Kafka Connect's ExtractField
// applied to an envelope's payload.
var ExtractSpec = &stdlib.Spec{
	Kind:    stdlib.TransformKind,
	Name:    "extract",
	Summary: "replace each record by one of its fields, which holds a record (payload.after)",
	Params: []stdlib.Param{
		{Name: "field", Type: stdlib.String, Required: true, Doc: "dotted path of the field whose record replaces the whole record"},
	},
	Result: func(attrs map[string]any, in *types.Type) (*types.Type, error) {
		path, _ := attrs["field"].(string)
		if in == nil || path == "" {
			return nil, nil
		}
		t := in
		for _, part := range strings.Split(path, ".") {
			f := t.Field(part)
			if f == nil {
				return nil, fmt.Errorf("field %q does not exist in %s", path, in)
			}
			t = f.Type
		}
		if t.Kind != types.Record {
			return nil, fmt.Errorf("field %q is %s, not a record", path, t)
		}
		return t.WithOptional(false), nil
	},
	NewTransform: func(cfg stdlib.Config) (stdlib.Transform, error) {
		path := cfg.String("field")
		if path == "" {
			return nil, fmt.Errorf("field is required")
		}
		return &extract{path: strings.Split(path, "."), name: path}, nil
	},
}

type extract struct {
	path []string
	name string
}

// Apply replaces r's value by the record at the path; a record where it is
// absent or not a record is an error (the stage's error policy applies).
func (x *extract) Apply(_ context.Context, r *stdlib.Record, emit func(stdlib.Record)) error {
	var v any = r.Value
	for _, part := range x.path {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("extract %q: %q is not a record", x.name, part)
		}
		v = m[part]
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("extract %q: the field holds %T, not a record", x.name, v)
	}
	r.Value = m
	emit(*r)
	return nil
}

func init() { stdlib.MustRegister(ExtractSpec) }
