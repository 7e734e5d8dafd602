package exec

import (
	"fmt"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// configAttrs converts a stage's static attributes to the Go values a
// stdlib.Config holds: secrets resolved, then checked by spec.Values (a
// reference in an attribute that is not a string, count = "${env:N}", is
// parsed as a literal of the attribute's kind) and by spec.Check, as the
// compiler checked the literals. Errors never show a resolved value.
func configAttrs(st *plan.Stage, spec *stdlib.Spec, sec Secrets) (map[string]any, error) {
	out := make(map[string]any, len(st.Attrs))
	for name, v := range st.Attrs {
		g, err := goValue(v, st, sec)
		if err != nil {
			return nil, fmt.Errorf("stage %q: attribute %q: %w", st.Name, name, err)
		}
		out[name] = g
	}
	if spec == nil {
		return out, nil
	}
	out, err := spec.Values(out)
	if err != nil {
		return nil, fmt.Errorf("stage %q: %w", st.Name, err)
	}
	if spec.Check != nil && hasSecret(st.Attrs) {
		if errs := spec.Check(out); len(errs) > 0 {
			return nil, fmt.Errorf("stage %q: attribute %q: %s", st.Name, errs[0].Attr, errs[0].Message)
		}
	}
	return out, nil
}

// hasSecret reports whether a value of attrs holds a reference.
func hasSecret(attrs map[string]*plan.Value) bool {
	var has func(v *plan.Value) bool
	has = func(v *plan.Value) bool {
		if v == nil {
			return false
		}
		if v.Kind == plan.SecretValue {
			return true
		}
		for _, x := range v.List {
			if has(x) {
				return true
			}
		}
		for _, e := range v.Map {
			if has(e.Value) {
				return true
			}
		}
		return false
	}
	for _, v := range attrs {
		if has(v) {
			return true
		}
	}
	return false
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
