package compiler

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/stdlib"
)

// valCtx is where a static value is read: its file, the def instance it
// belongs to (for ${param:x} and "instantiated at"), whether secrets may
// appear.
type valCtx struct {
	u        *unit
	rel      []lang.Related
	params   map[string]any // def argument values; nil outside a def
	def      *defInfo
	noSecret string // when set, secrets are not allowed here (the place's description)
}

func valueSpan(u *unit, v *ast.Value) lang.Span { return u.nodeSpan(ast.SpanOf(v.Pos, v.EndPos)) }

// describe names the kind of literal v for messages.
func describe(v *ast.Value) string {
	switch {
	case v.String != nil, v.Raw != nil:
		return "a string"
	case v.Duration != nil:
		return "a duration"
	case v.Size != nil:
		return "a size"
	case v.Number != nil:
		if v.Number.IsFloat() {
			return "a float"
		}
		return "an int"
	case v.Bool != nil:
		return "a bool"
	case v.Null:
		return "null"
	case v.List != nil:
		return "a list"
	case v.Map != nil:
		return "a map"
	case v.Ref != nil && v.Ref.Call:
		return "a call"
	case v.Ref != nil:
		return "an identifier"
	}
	return "a value"
}

// str decodes a string literal: ${param:x} is substituted, ${env:...} and
// ${file:...} keep the value symbolic (ir.Secret).
func (c *checker) str(sl *ast.StringLit, vc valCtx) any {
	var b strings.Builder
	secret := false
	for _, p := range sl.Parts {
		if p.Interp == nil {
			b.WriteString(p.Text)
			continue
		}
		in := p.Interp
		span := in.Span
		if span.File == "" {
			span = vc.u.nodeSpan(ast.SpanOf(sl.Pos, sl.EndPos))
		}
		switch in.Provider {
		case "param":
			if vc.params == nil {
				c.add(lang.Errorf(lang.BadInterpolation, span, "${param:%s} is only allowed inside a def", in.Key), vc.rel)
				continue
			}
			v, ok := vc.params[in.Key]
			if !ok && vc.def != nil && vc.def.declares(in.Key) {
				// A declared parameter whose argument was wrong or
				// missing: that error is reported at the use site.
				vc.def.paramUsed[in.Key] = true
				continue
			}
			if !ok {
				d := lang.Errorf(lang.UnknownName, span, "unknown def parameter %q", in.Key)
				d.Detail = suggest(in.Key, keysOf(vc.params))
				c.add(d, vc.rel)
				continue
			}
			if vc.def != nil {
				vc.def.paramUsed[in.Key] = true
			}
			b.WriteString(plainString(v))
		case "env", "file":
			if vc.noSecret != "" {
				c.add(lang.Errorf(lang.SecretNotAllowed, span, "secret reference %s is not allowed in %s", in, vc.noSecret), vc.rel)
			}
			secret = true
			b.WriteString(in.String())
		default:
			c.add(lang.Errorf(lang.BadInterpolation, span, "unknown reference provider %q", in.Provider), vc.rel)
		}
	}
	if secret {
		return ir.Secret(b.String())
	}
	return b.String()
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// plainString formats a value for ${param:x} substitution.
func plainString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case ir.Secret:
		return string(v)
	case stdlib.Ident:
		return string(v)
	case nil:
		return ""
	case time.Duration:
		return v.String()
	}
	return fmt.Sprint(v)
}

// literal converts v without a declared type.
func (c *checker) literal(v *ast.Value, vc valCtx) any {
	span := valueSpan(vc.u, v)
	switch {
	case v.String != nil:
		return c.str(v.String, vc)
	case v.Raw != nil:
		s := *v.Raw
		if len(s) >= 2 {
			s = s[1 : len(s)-1]
		}
		return s
	case v.Duration != nil:
		d, err := stdlib.ParseDuration(*v.Duration)
		if err != nil {
			c.add(lang.Errorf(lang.BadLiteral, span, "bad duration %q: %v", *v.Duration, err), vc.rel)
		}
		return d
	case v.Size != nil:
		n, err := stdlib.ParseSize(*v.Size)
		if err != nil {
			c.add(lang.Errorf(lang.BadLiteral, span, "bad size %q: %v", *v.Size, err), vc.rel)
		}
		return ir.Size(n)
	case v.Number != nil:
		return c.number(v.Number, vc, span)
	case v.Bool != nil:
		return bool(*v.Bool)
	case v.Null:
		return nil
	case v.List != nil:
		out := make([]any, 0, len(v.List.Items))
		for _, it := range v.List.Items {
			out = append(out, c.literal(it, vc))
		}
		return out
	case v.Map != nil:
		return c.mapLit(v.Map, vc, func(e *ast.MapEntry) any { return c.literal(e.Value, vc) })
	case v.Ref != nil:
		if v.Ref.Call {
			return c.call(v.Ref, vc)
		}
		return stdlib.Ident(v.Ref.Name.String())
	}
	return nil
}

func (c *checker) number(n *ast.Number, vc valCtx, span lang.Span) any {
	text := n.Text
	if n.Neg {
		text = "-" + text
	}
	if n.IsFloat() {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			c.add(lang.Errorf(lang.BadLiteral, span, "bad number %q", text), vc.rel)
		}
		return f
	}
	i, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		c.add(lang.Errorf(lang.BadLiteral, span, "bad number %q: out of range", text), vc.rel)
	}
	return i
}

func (c *checker) mapLit(m *ast.Map, vc valCtx, conv func(*ast.MapEntry) any) ir.Map {
	out := ir.Map{}
	seen := map[string]bool{}
	for _, e := range m.Entries {
		k := e.KeyName()
		if seen[k] {
			c.add(lang.Errorf(lang.DuplicateAttribute, vc.u.nodeSpan(ast.SpanOf(e.Pos, e.EndPos)), "key %q is set twice", k), vc.rel)
			continue
		}
		seen[k] = true
		out = append(out, ir.MapEntry{Key: k, Value: conv(e)})
	}
	return out
}

func (c *checker) call(r *ast.RefOrCall, vc valCtx) *ir.Call {
	cl := &ir.Call{Name: r.Name.String()}
	for i, a := range r.Args {
		k := a.Name
		if k == "" {
			k = strconv.Itoa(i)
		}
		cl.Args = append(cl.Args, ir.MapEntry{Key: k, Value: c.literal(a.Value, vc)})
	}
	return cl
}

// convert converts v to a value of parameter type pt, reporting PIPE303
// (wrong kind) and PIPE305 (value not allowed) at v.
func (c *checker) convert(v *ast.Value, pt stdlib.ParamType, attr string, vc valCtx) (any, bool) {
	span := valueSpan(vc.u, v)
	wrong := func(detail string) (any, bool) {
		d := lang.Errorf(lang.AttributeType, span, "attribute %q takes %s, not %s", attr, articled(pt), describe(v))
		d.Detail = detail
		c.add(d, vc.rel)
		return nil, false
	}
	ident := ""
	if v.Ref != nil && !v.Ref.Call {
		ident = v.Ref.Name.String()
	}
	if len(pt.OrEnum) > 0 && ident != "" {
		for _, e := range pt.OrEnum {
			if e == ident {
				return stdlib.Ident(ident), true
			}
		}
		d := lang.Errorf(lang.BadAttributeValue, span, "attribute %q does not take %q", attr, ident)
		d.Detail = "allowed: " + strings.Join(pt.OrEnum, ", ") + " or a " + string(pt.Kind)
		if s := suggest(ident, pt.OrEnum); s != "" {
			d.Detail = s + " " + d.Detail
		}
		c.add(d, vc.rel)
		return nil, false
	}
	// A reference such as count = "${env:N}" stays symbolic; the executor
	// converts the resolved text to the attribute's kind when a task starts.
	if v.String != nil && v.String.HasInterp() && scalarParam(pt.Kind) {
		if sec, ok := c.literal(v, vc).(ir.Secret); ok {
			return sec, true
		}
	}
	switch pt.Kind {
	case stdlib.AnyParam:
		return c.literal(v, vc), true
	case stdlib.StringParam:
		switch {
		case v.String != nil, v.Raw != nil:
			return c.literal(v, vc), true
		case ident != "":
			return wrong(fmt.Sprintf("did you mean %q?", ident))
		}
		return wrong("")
	case stdlib.TimeParam:
		if v.String != nil || v.Raw != nil {
			s, _ := c.literal(v, vc).(string)
			if _, err := stdlib.ParseTime(s); err != nil {
				c.add(lang.Errorf(lang.BadAttributeValue, span, "attribute %q takes an RFC 3339 time, not %q", attr, s), vc.rel)
				return nil, false
			}
			return s, true
		}
		return wrong("")
	case stdlib.IntParam:
		if v.Number != nil && !v.Number.IsFloat() {
			return c.literal(v, vc), true
		}
		return wrong("")
	case stdlib.FloatParam:
		if v.Number != nil {
			x := c.literal(v, vc)
			if i, ok := x.(int64); ok {
				return float64(i), true
			}
			return x, true
		}
		return wrong("")
	case stdlib.BoolParam:
		if v.Bool != nil {
			return bool(*v.Bool), true
		}
		if v.String != nil && (v.String.Value() == "true" || v.String.Value() == "false") {
			return wrong("did you mean " + v.String.Value() + " (without quotes)?")
		}
		return wrong("")
	case stdlib.DurationParam:
		if v.Duration != nil {
			return c.literal(v, vc), true
		}
		if v.Number != nil {
			return wrong("did you mean " + v.Number.Text + "s?")
		}
		if v.String != nil {
			if _, err := stdlib.ParseDuration(v.String.Value()); err == nil {
				return wrong("did you mean " + v.String.Value() + " (without quotes)?")
			}
		}
		return wrong("")
	case stdlib.SizeParam:
		if v.Size != nil {
			return c.literal(v, vc), true
		}
		if v.Number != nil && !v.Number.IsFloat() && !v.Number.Neg {
			// A size needs its unit, as a duration does: 128 is not
			// obviously bytes.
			n, _ := c.literal(v, vc).(int64)
			return wrong("did you mean " + sizeLiteral(n) + "?")
		}
		if v.String != nil {
			if _, err := stdlib.ParseSize(v.String.Value()); err == nil {
				return wrong("did you mean " + v.String.Value() + " (without quotes)?")
			}
		}
		return wrong("")
	case stdlib.EnumParam:
		if ident == "" {
			detail := "allowed: " + strings.Join(pt.Enum, ", ")
			if v.String != nil {
				for _, e := range pt.Enum {
					if e == v.String.Value() {
						detail = "did you mean " + e + " (without quotes)?"
					}
				}
			}
			return wrong(detail)
		}
		for _, e := range pt.Enum {
			if e == ident {
				return stdlib.Ident(ident), true
			}
		}
		d := lang.Errorf(lang.BadAttributeValue, span, "attribute %q does not take %q", attr, ident)
		d.Detail = "allowed: " + strings.Join(pt.Enum, ", ")
		if s := suggest(ident, pt.Enum); s != "" {
			d.Detail = s + " " + d.Detail
		}
		c.add(d, vc.rel)
		return nil, false
	case stdlib.ListParam:
		if v.List == nil {
			return wrong("")
		}
		out := make([]any, 0, len(v.List.Items))
		ok := true
		for _, it := range v.List.Items {
			x, good := c.convert(it, *pt.Elem, attr, vc)
			ok = ok && good
			out = append(out, x)
		}
		return out, ok
	case stdlib.MapParam:
		if v.Map == nil {
			return wrong("")
		}
		ok := true
		m := c.mapLit(v.Map, vc, func(e *ast.MapEntry) any {
			x, good := c.convert(e.Value, *pt.Elem, attr, vc)
			ok = ok && good
			return x
		})
		return m, ok
	case stdlib.BlockParam:
		if v.Map == nil {
			return wrong("")
		}
		return c.blockFromMap(v.Map, pt.Block, attr, vc), true
	case stdlib.SchemaParam:
		if v.Ref == nil || v.Ref.Call {
			return wrong("")
		}
		if _, ok := c.lookupSchema(vc.u, v.Ref.Name, vc.rel); !ok {
			return nil, false
		}
		return ir.SchemaRef(v.Ref.Name.String()), true
	}
	return c.literal(v, vc), true
}

func articled(pt stdlib.ParamType) string {
	s := pt.String()
	switch pt.Kind {
	case stdlib.EnumParam:
		return "one of " + strings.ReplaceAll(s, " | ", ", ")
	case stdlib.IntParam:
		return "an int"
	case stdlib.AnyParam:
		return "any value"
	case stdlib.ListParam, stdlib.MapParam:
		return "a " + s
	}
	if len(pt.OrEnum) > 0 {
		return s
	}
	return "a " + s
}

// blockFromMap converts a map literal given where a block is expected.
func (c *checker) blockFromMap(m *ast.Map, params []stdlib.Param, attr string, vc valCtx) ir.Map {
	return c.mapLit(m, vc, func(e *ast.MapEntry) any {
		p := findParam(params, e.KeyName())
		if p == nil {
			d := lang.Errorf(lang.UnknownAttribute, vc.u.nodeSpan(ast.SpanOf(e.Pos, e.EndPos)), "unknown attribute %q in %q", e.KeyName(), attr)
			d.Detail = suggest(e.KeyName(), paramNames(params))
			c.add(d, vc.rel)
			return nil
		}
		v, _ := c.convert(e.Value, p.Type, attr+"."+p.Name, vc)
		return v
	})
}

// scalarParam reports whether values of kind k are single literals that a
// ${env:...} reference may stand for.
func scalarParam(k stdlib.ParamKind) bool {
	switch k {
	case stdlib.IntParam, stdlib.FloatParam, stdlib.BoolParam, stdlib.DurationParam,
		stdlib.SizeParam, stdlib.EnumParam, stdlib.TimeParam:
		return true
	}
	return false
}

// sizeLiteral writes n bytes as a size literal in the largest binary unit
// that divides it: 1048576 is 1MiB, 1500 is 1500B.
func sizeLiteral(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
