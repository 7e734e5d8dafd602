package compiler

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// finishAttrs assembles a stage's attributes from its flat list, checks
// required ones, fills defaults and runs the spec's own Check.
func (c *checker) finishAttrs(st *stage) {
	if !st.ok {
		return
	}
	// Assemble top-level values, nesting blocks.
	top := map[string]*ir.Attr{}
	var order []string
	for _, fa := range st.flat {
		name := fa.path[0]
		a := top[name]
		if a == nil {
			a = &ir.Attr{Name: name, Span: fa.span}
			if len(fa.path) > 1 {
				a.Value = ir.Map{}
			}
			top[name] = a
			order = append(order, name)
		}
		if len(fa.path) == 1 {
			if m, isMap := a.Value.(ir.Map); isMap && fa.param.Type.Kind == stdlib.BlockParam {
				if fm, ok := fa.value.(ir.Map); ok && len(fm) == 0 {
					a.Value = m
					continue
				}
			}
			a.Value = fa.value
			a.Span = fa.span
			continue
		}
		a.Value = setNested(a.Value, fa.path[1:], fa.value)
	}
	params := c.topParams(st)
	for _, name := range order {
		a := top[name]
		if p := findParam(params, name); p != nil && p.Type.Kind == stdlib.BlockParam {
			if m, ok := a.Value.(ir.Map); ok {
				a.Value = c.checkBlock(st, p.Type.Block, []string{name}, m)
			}
		}
		switch name {
		case "tasks":
			if n, ok := a.Value.(int64); ok {
				if n < 1 {
					c.add(lang.Errorf(lang.BadAttributeValue, a.Span, "tasks must be at least 1"), st.flatSeen[name].rel())
				} else {
					st.tasks = int(n)
				}
			}
			continue
		case "lint":
			c.lintAllow(st, a)
			continue
		case "on_error":
			continue
		case "delivery":
			if id, ok := a.Value.(stdlib.Ident); ok {
				st.delivery, st.deliverySet = stdlib.Delivery(id), true
			}
			continue
		case "partition_by":
			switch v := a.Value.(type) {
			case string:
				st.partitionBy = v
			case stdlib.Ident:
				st.partitionBy = string(v)
			default:
				c.add(lang.Errorf(lang.AttributeType, a.Span, "partition_by takes a field name or \"partition\""), st.flatSeen[name].rel())
			}
			continue
		case "mode":
			if st.component == "route" {
				if id, ok := a.Value.(stdlib.Ident); ok {
					st.mode = string(id)
				}
			}
		case "schema":
			if ref, ok := a.Value.(ir.SchemaRef); ok && st.spec.Schema {
				t, _ := c.lookupSchemaName(st, string(ref))
				st.schema = t
			}
		}
		st.attrs = append(st.attrs, a)
	}
	// Required attributes.
	for _, p := range st.spec.Params {
		if p.Required && top[p.Name] == nil {
			d := lang.Errorf(lang.MissingAttribute, st.span, "%s %q (%s) needs attribute %q", st.kind, st.name, st.component, p.Name)
			d.Detail = fmt.Sprintf("%s: %s", p.Name, p.Type)
			if doc, cut := firstClause(p.Doc); doc != "" {
				d.Detail += " — " + doc
				if cut {
					d.Detail += fmt.Sprintf(" (pipe connectors %s says more)", st.component)
				}
			}
			c.add(d, st.instRel)
		}
	}
	// Defaults.
	for _, p := range st.spec.Params {
		if top[p.Name] != nil || p.Default == nil {
			continue
		}
		st.attrs = append(st.attrs, &ir.Attr{Name: p.Name, Value: fromDefault(p.Default, p.Type), Default: true})
	}
	// Component checks on the attributes as set, defaults applied.
	if st.spec.Check != nil {
		attrs := plainAttrs(st.attrs, st.schema)
		if st.kind == stdlib.SinkKind {
			attrs["delivery"] = stdlib.Ident(c.deliveryOf(st))
		}
		for _, e := range st.spec.Check(attrs) {
			span := st.span
			rel := st.instRel
			if fa := st.flatSeen[e.Attr]; fa != nil {
				span, rel = fa.span, fa.rel()
			}
			c.add(lang.Errorf(lang.BadAttributeValue, span, "%s", e.Message), rel)
		}
	}
	if st.component == "route" {
		if st.mode == "" {
			st.mode = "first"
			if p := st.spec.Param("mode"); p != nil && p.Default != nil {
				st.mode = plainString(p.Default)
			}
		}
	}
	// Lints on attribute values.
	for _, fa := range st.flat {
		if fa.param.Secret {
			if s, ok := fa.value.(string); ok && s != "" {
				c.lint(st, lang.HardcodedSecret, fa.span, fa.rel(), "attribute %q holds a literal credential", strings.Join(fa.path, ".")).
					Detail = "use ${env:NAME} or ${file:path:key}"
			}
		}
		if len(fa.path) >= 2 && fa.path[len(fa.path)-2] == "tls" && fa.path[len(fa.path)-1] == "insecure_skip_verify" {
			if b, ok := fa.value.(bool); ok && b {
				c.lint(st, lang.InsecureTLS, fa.span, fa.rel(), "TLS certificate verification is switched off")
			}
		}
	}
}

func (fa *flatAttr) rel() []lang.Related { return fa.relv }

// checkBlock checks the required attributes of a present block and fills
// its defaults.
func (c *checker) checkBlock(st *stage, params []stdlib.Param, path []string, m ir.Map) ir.Map {
	for _, p := range params {
		v, ok := m.Get(p.Name)
		full := append(slices.Clone(path), p.Name)
		switch {
		case !ok && p.Required:
			span := st.span
			if fa := st.flatSeen[strings.Join(path, ".")]; fa != nil {
				span = fa.name
			}
			c.add(lang.Errorf(lang.MissingAttribute, span, "block %q needs attribute %q", strings.Join(path, "."), p.Name), st.instRel)
		case !ok && p.Default != nil:
			m = append(m, ir.MapEntry{Key: p.Name, Value: fromDefault(p.Default, p.Type)})
		case ok && p.Type.Kind == stdlib.BlockParam:
			if sub, isMap := v.(ir.Map); isMap {
				sub = c.checkBlock(st, p.Type.Block, full, sub)
				for i := range m {
					if m[i].Key == p.Name {
						m[i].Value = sub
					}
				}
			}
		}
	}
	return m
}

// setNested sets path inside the (map) value v.
func setNested(v any, path []string, val any) any {
	m, _ := v.(ir.Map)
	m = slices.Clone(m)
	for i := range m {
		if m[i].Key == path[0] {
			if len(path) == 1 {
				if _, isMap := m[i].Value.(ir.Map); isMap {
					if vm, ok := val.(ir.Map); ok && len(vm) == 0 {
						return m
					}
				}
				m[i].Value = val
			} else {
				m[i].Value = setNested(m[i].Value, path[1:], val)
			}
			return m
		}
	}
	if len(path) == 1 {
		return append(m, ir.MapEntry{Key: path[0], Value: val})
	}
	return append(m, ir.MapEntry{Key: path[0], Value: setNested(nil, path[1:], val)})
}

func (c *checker) lookupSchemaName(st *stage, name string) (*types.Type, bool) {
	u := c.main
	parts := strings.Split(name, ".")
	if len(parts) == 1 {
		if si := u.schemas[name]; si != nil {
			return c.schemaType(si), true
		}
		return nil, false
	}
	if im := u.imports[parts[0]]; im != nil && im.u != nil {
		if si := im.u.schemas[parts[1]]; si != nil {
			return c.schemaType(si), true
		}
	}
	// A def from another file names schemas of that file.
	if st.def != nil {
		if si := st.def.u.schemas[name]; si != nil {
			return c.schemaType(si), true
		}
	}
	return nil, false
}

// lintAllow reads lint { allow = [...] }.
func (c *checker) lintAllow(st *stage, a *ir.Attr) {
	m, _ := a.Value.(ir.Map)
	v, _ := m.Get("allow")
	list, _ := v.([]any)
	fa := st.flatSeen["lint.allow"]
	for _, x := range list {
		s, _ := x.(string)
		code, ok := lang.ParseCode(s)
		if !ok || !code.IsLint() {
			span := a.Span
			if fa != nil {
				span = fa.span
			}
			c.add(lang.Errorf(lang.BadAttributeValue, span, "lint.allow takes lint codes (PIPE4xx), not %q", s), st.instRel)
			continue
		}
		st.allow[code] = true
	}
}

// plainAttrs converts IR attribute values to the Go values a stdlib.Config
// holds (see stdlib.Config).
func plainAttrs(attrs []*ir.Attr, schema *types.Type) map[string]any {
	out := make(map[string]any, len(attrs))
	for _, a := range attrs {
		if _, ok := a.Value.(ir.SchemaRef); ok {
			if schema != nil {
				out[a.Name] = schema
			}
			continue
		}
		out[a.Name] = plain(a.Value)
	}
	return out
}

func plain(v any) any {
	switch v := v.(type) {
	case ir.Secret:
		return string(v)
	case ir.Size:
		return int64(v)
	case ir.SchemaRef:
		return stdlib.Ident(v)
	case ir.Map:
		m := make(map[string]any, len(v))
		for _, e := range v {
			m[e.Key] = plain(e.Value)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = plain(x)
		}
		return out
	case *ir.Call:
		cl := &stdlib.Call{Name: v.Name, Args: map[string]any{}}
		for _, e := range v.Args {
			cl.Args[e.Key] = plain(e.Value)
		}
		return cl
	}
	return v
}

// fromDefault converts a spec default to an IR value.
func fromDefault(v any, pt stdlib.ParamType) any {
	v, _ = stdlib.CheckValue(v, pt) // checked when the spec was registered
	return fromConfig(v, pt)
}

// fromConfig converts a value a stdlib.Config holds for type pt to an IR
// value; map keys are sorted.
func fromConfig(v any, pt stdlib.ParamType) any {
	elem := stdlib.AnyValue
	if pt.Elem != nil {
		elem = *pt.Elem
	}
	switch x := v.(type) {
	case int64:
		if pt.Kind == stdlib.SizeParam {
			return ir.Size(x)
		}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromConfig(e, elem)
		}
		return out
	case map[string]any:
		m := ir.Map{}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			ept := elem
			if p := findParam(pt.Block, k); p != nil {
				ept = p.Type
			}
			m = append(m, ir.MapEntry{Key: k, Value: fromConfig(x[k], ept)})
		}
		return m
	case *stdlib.Call:
		cl := &ir.Call{Name: x.Name}
		for _, k := range slices.Sorted(maps.Keys(x.Args)) {
			cl.Args = append(cl.Args, ir.MapEntry{Key: k, Value: fromConfig(x.Args[k], stdlib.AnyValue)})
		}
		return cl
	}
	return v
}

// firstClause returns the first clause of a parameter's documentation (up
// to "; " or a sentence's ". ", not an ellipsis's), and whether anything
// was left out.
func firstClause(doc string) (string, bool) {
	for i := 0; i+1 < len(doc); i++ {
		if doc[i+1] == ' ' && (doc[i] == ';' || doc[i] == '.' && (i == 0 || doc[i-1] != '.')) {
			return doc[:i], true
		}
	}
	return doc, false
}

// deliveryOf is the guarantee asked of sink st: its own delivery, else the
// pipeline's, else at_least_once.
func (c *checker) deliveryOf(st *stage) stdlib.Delivery {
	switch {
	case st.deliverySet:
		return st.delivery
	case c.prog.Delivery != "":
		return c.prog.Delivery
	}
	return stdlib.AtLeastOnce
}
