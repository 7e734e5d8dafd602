package exec

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// configAttrs converts a stage's static attributes to the Go values a
// stdlib.Config holds, resolving secrets.
// A secret reference in an attribute that is not a string (count =
// "${env:N}") is converted to the attribute's kind once resolved.
func configAttrs(st *plan.Stage, spec *stdlib.Spec, sec Secrets) (map[string]any, error) {
	out := make(map[string]any, len(st.Attrs))
	for name, v := range st.Attrs {
		g, err := goValue(v, st, sec)
		if err == nil && v != nil && v.Kind == plan.SecretValue && spec != nil {
			if p := spec.Param(name); p != nil {
				g, err = convertSecret(g.(string), p.Type)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("stage %q: attribute %q: %w", st.Name, name, err)
		}
		out[name] = g
	}
	return out, nil
}

// convertSecret converts a resolved reference to the kind of its
// attribute. Errors never show the value.
func convertSecret(s string, t stdlib.ParamType) (any, error) {
	s = strings.TrimSpace(s)
	var v any
	var err error
	switch t.Kind {
	case stdlib.IntParam:
		v, err = strconv.ParseInt(s, 10, 64)
	case stdlib.FloatParam:
		v, err = strconv.ParseFloat(s, 64)
	case stdlib.BoolParam:
		v, err = strconv.ParseBool(s)
	case stdlib.DurationParam:
		v, err = time.ParseDuration(s)
	case stdlib.SizeParam:
		v, err = strconv.ParseInt(s, 10, 64)
	case stdlib.EnumParam:
		return stdlib.Ident(s), nil
	default:
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolved value is not a valid %s", t.Kind)
	}
	return v, nil
}

func goValue(v *plan.Value, st *plan.Stage, sec Secrets) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch v.Kind {
	case plan.StringValue:
		return v.Str, nil
	case plan.IntValue, plan.SizeValue:
		return v.Int, nil
	case plan.FloatValue:
		return v.Float, nil
	case plan.BoolValue:
		return v.Bool, nil
	case plan.DurationValue:
		return time.Duration(v.Int), nil
	case plan.NullValue:
		return nil, nil
	case plan.IdentValue:
		return stdlib.Ident(v.Str), nil
	case plan.SchemaValue:
		return st.Schema, nil
	case plan.SecretValue:
		if sec == nil {
			return nil, fmt.Errorf("no secret resolver")
		}
		return expandSecrets(v.Str, sec)
	case plan.ListValue:
		l := make([]any, len(v.List))
		for i, e := range v.List {
			g, err := goValue(e, st, sec)
			if err != nil {
				return nil, err
			}
			l[i] = g
		}
		return l, nil
	case plan.MapValue:
		m := make(map[string]any, len(v.Map))
		for _, e := range v.Map {
			g, err := goValue(e.Value, st, sec)
			if err != nil {
				return nil, err
			}
			m[e.Key] = g
		}
		return m, nil
	case plan.CallValue:
		if v.Call == nil {
			return nil, fmt.Errorf("call value without a call")
		}
		c := &stdlib.Call{Name: v.Call.Name, Args: make(map[string]any, len(v.Call.Args))}
		for _, e := range v.Call.Args {
			g, err := goValue(e.Value, st, sec)
			if err != nil {
				return nil, err
			}
			c.Args[e.Key] = g
		}
		return c, nil
	}
	return nil, fmt.Errorf("unknown value kind %q", v.Kind)
}

// at formats a span's start as file:line.
func atSpan(file string, line int) string {
	if file == "" {
		file = "<input>"
	}
	return fmt.Sprintf("%s:%d", file, line)
}

// splitPath splits a dotted field path.
func splitPath(p string) []string { return strings.Split(p, ".") }
