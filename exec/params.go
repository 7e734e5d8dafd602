package exec

import (
	"fmt"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/fn"
)

// runParams are a run's parameters as expressions read them: params.x.
type runParams struct {
	typ    *types.Type    // the record type of params; nil without any
	values map[string]any // by name; a secret's is an fn.Secret
}

// paramKinds maps a parameter's type to the attribute kind whose literal
// rules read a reference's text as it (a timestamp: RFC 3339).
var paramKinds = map[types.Kind]stdlib.ParamType{
	types.String: stdlib.String, types.Secret: stdlib.String, types.Int: stdlib.Int,
	types.Float: stdlib.Float, types.Bool: stdlib.Bool, types.Timestamp: stdlib.Time,
}

// resolveParams reads the plan's parameters: a reference is resolved by sec
// (so the redactor learns its value) and its text read as the parameter's
// type, as an attribute's would be. An error names the parameter and the
// reference, never the value.
func resolveParams(ps []*plan.Param, sec Secrets) (runParams, error) {
	var rp runParams
	if len(ps) == 0 {
		return rp, nil
	}
	rp.typ = paramsRecord(ps)
	rp.values = make(map[string]any, len(ps))
	for _, p := range ps {
		if p == nil || p.Type == nil || p.Value == nil {
			return rp, fmt.Errorf("plan param %v is incomplete", p)
		}
		kind, ok := paramKinds[p.Type.Kind]
		if !ok {
			return rp, fmt.Errorf("param %q: a param cannot be a %s", p.Name, p.Type)
		}
		ref := "params." + p.Name // what a secret written in the file prints as
		var v any
		switch p.Value.Kind {
		case plan.SecretValue:
			text, err := expandSecrets(p.Value.Str, sec)
			if err != nil {
				return rp, fmt.Errorf("param %q: %w", p.Name, err)
			}
			if v, err = stdlib.ParseValue(text, kind); err != nil {
				return rp, fmt.Errorf("param %q: the value of %s is %v", p.Name, p.Value.Str, err)
			}
			ref = p.Value.Str
		case plan.StringValue, plan.IntValue, plan.FloatValue, plan.BoolValue:
			v, _ = goValue(p.Value, nil, nil)
		default:
			return rp, fmt.Errorf("param %q: a value of kind %s", p.Name, p.Value.Kind)
		}
		switch p.Type.Kind {
		case types.Secret:
			s, _ := v.(string)
			v = fn.NewSecret(s, ref)
		case types.Timestamp:
			s, _ := v.(string)
			t, err := stdlib.ParseTime(s)
			if err != nil {
				return rp, fmt.Errorf("param %q: %v", p.Name, err)
			}
			v = t
		case types.Float:
			if n, isInt := v.(int64); isInt {
				v = float64(n)
			}
		}
		rp.values[p.Name] = v
	}
	return rp, nil
}

// paramsRecord is the type of params for the plan's parameters, nil
// without any.
func paramsRecord(ps []*plan.Param) *types.Type {
	if len(ps) == 0 {
		return nil
	}
	t := &types.Type{Kind: types.Record, Name: "params"}
	for _, p := range ps {
		if p != nil {
			t.Fields = append(t.Fields, &types.Field{Name: p.Name, Type: p.Type})
		}
	}
	return t
}
