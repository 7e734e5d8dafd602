package compiler

import (
	"fmt"
	"slices"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/types"
)

// paramKinds are the types a run-time parameter may have: values that a
// reference's text can be read as.
var paramKinds = []types.Kind{types.String, types.Int, types.Float, types.Bool, types.Timestamp, types.Secret}

// readParams reads the main file's run-time parameters, `param name: type
// = value`, into the program and c.fileParams, the type of params in its
// expressions. A value that holds a reference (${env:…}, ${file:…}) stays
// symbolic: the executor reads and parses it when the run starts.
func (c *checker) readParams() {
	u := c.main
	seen := map[string]lang.Span{}
	for _, it := range u.file.Items {
		if it.Param == nil {
			continue
		}
		d := it.Param.Param
		span := u.identSpan(d.Name)
		if first, dup := seen[d.Name.Name]; dup {
			e := c.errorf(lang.DuplicateName, span, "param %q is already defined", d.Name)
			e.Related = []lang.Related{{Span: first, Message: "first defined here"}}
			continue
		}
		seen[d.Name.Name] = span
		t := c.paramType(u, d.Type)
		if t == nil {
			continue
		}
		if d.Default == nil {
			c.errorf(lang.MissingAttribute, span, "param %q needs a value", d.Name).
				Detail = fmt.Sprintf(`write param %s: %s = <value>, or = "${env:NAME}" to read it when the run starts`, d.Name, t)
			continue
		}
		vspan := valueSpan(u, d.Default)
		val := c.literal(d.Default, valCtx{u: u})
		_, isRef := val.(ir.Secret)
		switch {
		case isRef:
		case t.Kind == types.Secret:
			if _, ok := val.(string); !ok {
				c.errorf(lang.AttributeType, vspan, "param %q is a secret, a string: not %s", d.Name, describe(d.Default))
				continue
			}
			c.warnf(lang.HardcodedSecret, vspan, "secret param %q is written in the file", d.Name).
				Detail = fmt.Sprintf(`read it when the run starts: param %s: secret = "${env:NAME}"`, d.Name)
		default:
			x, msg := c.typedValue(d.Default, t, valCtx{u: u})
			if msg != "" {
				c.errorf(lang.AttributeType, vspan, "param %q takes %s, not %s", d.Name, t, msg)
				continue
			}
			val = x
		}
		c.prog.Params = append(c.prog.Params, &ir.Param{Name: d.Name.Name, Type: t, Value: val, Span: span})
		if c.fileParams == nil {
			c.fileParams = &types.Type{Kind: types.Record, Name: "params"}
		}
		c.fileParams.Fields = append(c.fileParams.Fields, &types.Field{Name: d.Name.Name, Type: t})
	}
}

// paramType resolves a parameter's type: a scalar or secret, never
// optional (a parameter has a value).
func (c *checker) paramType(u *unit, at *ast.Type) *types.Type {
	span := u.nodeSpan(ast.SpanOf(at.Pos, at.EndPos))
	var t *types.Type
	if at.Name != nil && at.Name.String() == "secret" && at.List == nil && at.MapKey == nil {
		t = types.SecretType.WithOptional(at.Optional)
	} else {
		t = c.resolveType(u, at, nil)
	}
	if !slices.Contains(paramKinds, t.Kind) || t.Optional {
		c.errorf(lang.AttributeType, span, "a param is string, int, float, bool, timestamp or secret, not %s", t)
		return nil
	}
	return t
}

// paramsType is the type of params in an expression of a def instance
// whose parameters have type def (nil outside a def): the def's parameters
// and the file's, a def's hiding the file's of the same name.
func (c *checker) paramsType(def *types.Type) *types.Type {
	if def == nil || c.fileParams == nil {
		if def != nil {
			return def
		}
		return c.fileParams
	}
	out := &types.Type{Kind: types.Record, Fields: slices.Clone(def.Fields)}
	for _, f := range c.fileParams.Fields {
		if def.Field(f.Name) == nil {
			out.Fields = append(out.Fields, f)
		}
	}
	return out
}

// useParams marks the file's parameters that expression src reads (those
// that no def parameter of the expression's def hides).
func (c *checker) useParams(src string, def *defInfo) {
	scanParams(src, func(_, _ int, name string) {
		if def == nil || !def.declares(name) {
			c.paramUsed[name] = true
		}
	})
}

// unusedParamLints reports the file's parameters that no expression reads.
func (c *checker) unusedParamLints() {
	for _, p := range c.prog.Params {
		if !c.paramUsed[p.Name] {
			c.warnf(lang.Unused, p.Span, "param %q is not used", p.Name)
		}
	}
}
