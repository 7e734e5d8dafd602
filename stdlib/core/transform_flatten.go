package core

import (
	"context"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// FlattenSpec is the flatten transform: nested records become top-level
// fields named by their path, like Kafka Connect's Flatten.
var FlattenSpec = &stdlib.Spec{
	Kind:    stdlib.TransformKind,
	Name:    "flatten",
	Summary: "turn nested records into top-level fields named by their path (customer.id -> customer_id)",
	Params: []stdlib.Param{
		{Name: "separator", Type: stdlib.String, Default: "_", Doc: "joins the names along a path"},
	},
	Result: func(attrs map[string]any, in *types.Type) (*types.Type, error) {
		if in == nil {
			return nil, nil
		}
		sep, _ := attrs["separator"].(string)
		out := &types.Type{Kind: types.Record}
		var walk func(t *types.Type, prefix string, optional bool)
		walk = func(t *types.Type, prefix string, optional bool) {
			for _, f := range t.Fields {
				name := prefix + f.Name
				if f.Type.Kind == types.Record {
					walk(f.Type, name+sep, optional || f.Type.Optional)
					continue
				}
				out.Fields = append(out.Fields, &types.Field{Name: name, Type: f.Type.WithOptional(optional || f.Type.Optional)})
			}
		}
		walk(in, "", false)
		return out, nil
	},
	NewTransform: func(cfg stdlib.Config) (stdlib.Transform, error) {
		return &flatten{sep: cfg.String("separator"), in: cfg.Input}, nil
	},
}

// flatten flattens records. With a typed input only record fields are
// flattened (map<string, T> fields stay maps); untyped, every nested object is.
type flatten struct {
	sep string
	in  *types.Type
}

func (f *flatten) Apply(_ context.Context, r *stdlib.Record, emit func(stdlib.Record)) error {
	m, ok := r.Value.(map[string]any)
	if !ok {
		emit(*r)
		return nil
	}
	out := make(map[string]any, len(m))
	f.walk(out, m, f.in, "")
	r.Value = out
	emit(*r)
	return nil
}

func (f *flatten) walk(out, m map[string]any, t *types.Type, prefix string) {
	for k, v := range m {
		var ft *types.Type
		if fd := t.Field(k); fd != nil {
			ft = fd.Type
		}
		isRecord := ft != nil && ft.Kind == types.Record
		nested, isMap := v.(map[string]any)
		switch {
		case isMap && (t == nil || isRecord):
			f.walk(out, nested, ft, prefix+k+f.sep)
		case v == nil && isRecord:
			// An absent optional record: its fields are absent too.
		default:
			out[prefix+k] = v
		}
	}
}

func init() { stdlib.MustRegister(FlattenSpec) }
