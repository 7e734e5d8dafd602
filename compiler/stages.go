package compiler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// stage is the checker's working state for one stage.
type stage struct {
	name      string
	kind      stdlib.Kind
	decl      *ast.Stage
	span      lang.Span // the name
	declSpan  lang.Span
	compSpan  lang.Span
	order     int
	spec      *stdlib.Spec
	component string
	def       *defInfo
	defName   string
	params    map[string]any
	paramList []*ir.Attr
	paramType *types.Type
	instRel   []lang.Related
	allow     map[lang.Code]bool

	flat     []*flatAttr
	flatSeen map[string]*flatAttr
	wheres   []*exprItem
	cases    []*exprItem
	elsePort string
	elseSpan lang.Span
	assigns  []*exprItem
	attrExpr []*exprItem
	keep     []*pathItem
	drop     []*pathItem

	onError     *ir.ErrorPolicy
	onErrorSpan lang.Span
	dlTargets   []dlTarget
	delivery    stdlib.Delivery
	deliverySet bool
	tasks       int
	schema      *types.Type
	partitionBy string
	mode        string

	attrs []*ir.Attr
	exprs []*ir.Expr
	in    *types.Type
	out   *types.Type
	// portOut holds a route's output type by port, each narrowed by its
	// case (see routeTypes).
	portOut map[string]*types.Type
	typed   bool // input type known (or a source)
	// mayFail: one of the stage's expressions may fail on a record.
	mayFail bool
	ok      bool // component resolved
	// metaFrom is where the stage's records come from, for the metadata
	// they carry; meta is the type of meta its expressions see.
	metaFrom []metaOrigin
	meta     *types.Type
}

type flatAttr struct {
	path    []string
	param   *stdlib.Param
	value   any
	span    lang.Span // the value
	name    lang.Span // the attribute name
	fromDef bool
	relv    []lang.Related
}

type exprItem struct {
	kind   ir.ExprKind
	target string
	path   []string
	e      *ast.Expr
	want   *types.Type
	span   lang.Span // target span (field or port)
	vc     valCtx
}

type pathItem struct {
	path []string
	span lang.Span
	vc   valCtx
}

type dlTarget struct {
	name string
	span lang.Span
	rel  []lang.Related
}

// item is one body item with the context it is read in.
type item struct {
	b  *ast.BodyItem
	vc valCtx
}

// declareStages records every stage of the main file and checks its body.
func (c *checker) declareStages() {
	u := c.main
	n := 0
	for _, it := range u.file.Items {
		sd := it.Stage
		if sd == nil {
			continue
		}
		span := u.identSpan(sd.Name)
		st := &stage{
			name:     sd.Name.Name,
			kind:     stdlib.Kind(sd.Kind),
			decl:     sd,
			span:     span,
			declSpan: u.nodeSpan(ast.SpanOf(sd.Pos, sd.EndPos)),
			compSpan: u.nodeSpan(ast.SpanOf(sd.Component.Pos, sd.Component.EndPos)),
			order:    n,
			allow:    map[lang.Code]bool{},
			flatSeen: map[string]*flatAttr{},
		}
		n++
		if reserved[sd.Name.Name] {
			c.errorf(lang.ReservedName, span, "stage name %q is reserved", sd.Name)
		}
		if prev, dup := c.stages[sd.Name.Name]; dup {
			d := c.errorf(lang.DuplicateName, span, "stage %q is already defined", sd.Name)
			d.Related = []lang.Related{{Span: prev.span, Message: "first defined here"}}
			continue
		}
		if first, clash := u.names[sd.Name.Name]; clash {
			d := c.errorf(lang.DuplicateName, span, "stage %q has the name of a schema, def or import", sd.Name)
			d.Related = []lang.Related{{Span: first, Message: "first defined here"}}
		}
		c.stages[sd.Name.Name] = st
		c.order = append(c.order, st)
		c.resolveComponent(st)
	}
}

// resolveComponent finds the stage's component (a registry spec or a def)
// and reads its body.
func (c *checker) resolveComponent(st *stage) {
	u := c.main
	ref := st.decl.Component
	name := ref.Name.String()
	var items []item
	useVC := valCtx{u: u}

	var di *defInfo
	switch len(ref.Name.Parts) {
	case 1:
		di = u.defs[name]
	case 2:
		iu, ok := c.importOf(u, ref.Name.Parts[0], st.compSpan)
		if !ok {
			d := c.errorf(lang.UnknownName, st.compSpan, "unknown import %q", ref.Name.Parts[0])
			d.Detail = suggest(ref.Name.Parts[0], slices.Sorted(mapKeys(u.imports)))
			return
		}
		if iu == nil {
			return
		}
		di = iu.defs[ref.Name.Parts[1]]
		if di == nil {
			d := c.errorf(lang.UnknownName, st.compSpan, "unknown def %q in %q", ref.Name.Parts[1], ref.Name.Parts[0])
			d.Detail = suggest(ref.Name.Parts[1], slices.Sorted(mapKeys(iu.defs)))
			return
		}
	default:
		c.errorf(lang.UnknownComponent, st.compSpan, "unknown %s %q", st.kind, name)
		return
	}

	if di != nil {
		di.used = true
		if stdlib.Kind(di.decl.Kind) != st.kind {
			c.errorf(lang.BadDefArgs, st.compSpan, "def %q is a %s, not a %s", name, di.decl.Kind, st.kind)
			return
		}
		st.def, st.defName = di, name
		// The related span says where; the file's path is not repeated.
		st.instRel = []lang.Related{{Span: st.compSpan, Message: fmt.Sprintf("instantiated by %s %q", st.kind, st.name)}}
		c.bindArgs(st, di, ref)
		dvc := valCtx{u: di.u, rel: st.instRel, params: st.params, def: di}
		for _, b := range di.decl.Items {
			items = append(items, item{b: b, vc: dvc})
		}
		ref = di.decl.Component
		if len(ref.Name.Parts) != 1 {
			c.add(lang.Errorf(lang.UnknownComponent, di.u.nodeSpan(ast.SpanOf(ref.Pos, ref.EndPos)),
				"a def must use a component, not %q", ref.Name.String()), st.instRel)
			return
		}
		name = ref.Name.String()
	} else if ref.Call {
		c.errorf(lang.BadDefArgs, st.compSpan, "component %q takes no arguments; set attributes in the body", name)
	}

	spec := c.reg.Lookup(st.kind, name)
	if spec == nil && st.kind == stdlib.TransformKind {
		spec = builtinTransforms[name]
	}
	if spec == nil {
		span := st.compSpan
		if di != nil {
			span = di.u.nodeSpan(ast.SpanOf(ref.Pos, ref.EndPos))
		}
		d := lang.Errorf(lang.UnknownComponent, span, "unknown %s %q", st.kind, name)
		cands := c.reg.Names(st.kind)
		for k := range u.defs {
			cands = append(cands, k)
		}
		d.Detail = suggest(name, cands)
		if d.Detail == "" {
			for _, k := range []stdlib.Kind{stdlib.SourceKind, stdlib.TransformKind, stdlib.SinkKind} {
				if k != st.kind && c.reg.Lookup(k, name) != nil {
					d.Detail = fmt.Sprintf("%q is a %s, not a %s", name, k, st.kind)
				}
			}
		}
		if di != nil {
			c.add(d, st.instRel)
		} else {
			c.add(d, nil)
		}
		return
	}
	st.spec, st.component, st.ok = spec, name, true
	for _, b := range st.decl.Items {
		items = append(items, item{b: b, vc: useVC})
	}
	c.readBody(st, items)
}

// bindArgs checks a def use's arguments against the def's parameters.
func (c *checker) bindArgs(st *stage, di *defInfo, ref *ast.RefOrCall) {
	u := c.main
	st.params = map[string]any{}
	st.paramType = &types.Type{Kind: types.Record}
	ptypes := map[string]*types.Type{}
	var names []string
	for _, p := range di.decl.Params {
		if _, dup := ptypes[p.Name.Name]; dup {
			continue // reported once, in checkDefParams
		}
		t := di.ptypes[p.Name.Name]
		if t == nil {
			t = types.AnyType
		}
		ptypes[p.Name.Name] = t
		names = append(names, p.Name.Name)
		st.paramType.Fields = append(st.paramType.Fields, &types.Field{Name: p.Name.Name, Type: t})
	}
	given := map[string]bool{}
	for i, a := range ref.Args {
		span := u.nodeSpan(ast.SpanOf(a.Pos, a.EndPos))
		pname := a.Name
		if pname == "" {
			if i >= len(di.decl.Params) {
				c.errorf(lang.BadDefArgs, span, "def %q takes %s", di.decl.Name, plural(len(di.decl.Params), "parameter"))
				continue
			}
			pname = di.decl.Params[i].Name.Name
		}
		t, ok := ptypes[pname]
		if !ok {
			d := c.errorf(lang.BadDefArgs, span, "def %q has no parameter %q", di.decl.Name, pname)
			d.Detail = suggest(pname, names)
			continue
		}
		if given[pname] {
			c.errorf(lang.BadDefArgs, span, "parameter %q is given twice", pname)
			continue
		}
		given[pname] = true
		v, msg := c.typedValue(a.Value, t, valCtx{u: u, noSecret: "a def argument"})
		if msg != "" {
			c.errorf(lang.BadDefArgs, valueSpan(u, a.Value), "parameter %q of %q takes %s, not %s", pname, di.decl.Name, t, msg)
			continue
		}
		st.params[pname] = v
		st.paramList = append(st.paramList, &ir.Attr{Name: pname, Value: v, Span: valueSpan(u, a.Value)})
	}
	for _, p := range di.decl.Params {
		if given[p.Name.Name] {
			continue
		}
		if p.Default == nil {
			c.errorf(lang.BadDefArgs, st.compSpan, "def %q needs parameter %q", di.decl.Name, p.Name)
			continue
		}
		v, msg := c.typedValue(p.Default, ptypes[p.Name.Name], valCtx{u: di.u, noSecret: "a def parameter"})
		if msg != "" {
			c.add(lang.Errorf(lang.BadDefArgs, valueSpan(di.u, p.Default), "default of parameter %q must be %s, not %s", p.Name, ptypes[p.Name.Name], msg), nil)
			continue
		}
		st.params[p.Name.Name] = v
		st.paramList = append(st.paramList, &ir.Attr{Name: p.Name.Name, Value: v, Span: valueSpan(di.u, p.Default), Default: true})
	}
	slices.SortStableFunc(st.paramList, func(a, b *ir.Attr) int { return strings.Compare(a.Name, b.Name) })
}

// typedValue converts v to a value of type t; it returns a description of
// v when it does not fit.
func (c *checker) typedValue(v *ast.Value, t *types.Type, vc valCtx) (any, string) {
	x, msg, _ := c.typedValueAt(v, t, vc)
	return x, msg
}

// typedValueAt is typedValue that also returns the span of the innermost
// part of v that does not fit (a list element, a record field or key).
func (c *checker) typedValueAt(v *ast.Value, t *types.Type, vc valCtx) (any, string, lang.Span) {
	x, msg, span := c.typedValueIn(v, t, vc)
	if msg != "" && !span.IsValid() {
		span = valueSpan(vc.u, v)
	}
	return x, msg, span
}

func (c *checker) typedValueIn(v *ast.Value, t *types.Type, vc valCtx) (any, string, lang.Span) {
	var none lang.Span
	if v.Null {
		if t.Optional || t.Kind == types.Any {
			return nil, "", none
		}
		return nil, "null", none
	}
	switch t.Kind {
	case types.Any:
		return c.literal(v, vc), "", none
	case types.String, types.Bytes:
		if v.String != nil || v.Raw != nil {
			return c.literal(v, vc), "", none
		}
	case types.Timestamp:
		if v.String != nil || v.Raw != nil {
			s, _ := c.literal(v, vc).(string)
			if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return s, "", none
			}
			return nil, fmt.Sprintf("%q (not an RFC 3339 time)", s), none
		}
	case types.Int:
		if v.Number != nil && !v.Number.IsFloat() {
			return c.literal(v, vc), "", none
		}
	case types.Float:
		if v.Number != nil {
			x := c.literal(v, vc)
			if i, ok := x.(int64); ok {
				return float64(i), "", none
			}
			return x, "", none
		}
	case types.Bool:
		if v.Bool != nil {
			return bool(*v.Bool), "", none
		}
	case types.List:
		if v.List != nil {
			out := []any{}
			for _, it := range v.List.Items {
				x, msg, span := c.typedValueAt(it, t.Elem, vc)
				if msg != "" {
					return nil, "a list holding " + msg, span
				}
				out = append(out, x)
			}
			return out, "", none
		}
	case types.Map:
		if v.Map != nil {
			bad, badSpan := "", none
			m := c.mapLit(v.Map, vc, func(e *ast.MapEntry) any {
				x, msg, span := c.typedValueAt(e.Value, t.Elem, vc)
				if msg != "" && bad == "" {
					bad, badSpan = "a map holding "+msg, span
				}
				return x
			})
			return m, bad, badSpan
		}
	case types.Record:
		if v.Map != nil {
			return c.recordValue(v.Map, t, vc)
		}
	}
	return nil, strings.TrimPrefix(strings.TrimPrefix(describe(v), "an "), "a "), none
}

// recordValue converts a map literal to a record of type t; it reports a
// description of the first mismatch and the span of the offending key or
// value (invalid when a field is missing: the whole record is at fault).
func (c *checker) recordValue(m *ast.Map, t *types.Type, vc valCtx) (ir.Map, string, lang.Span) {
	bad, badSpan := "", lang.Span{}
	out := c.mapLit(m, vc, func(e *ast.MapEntry) any {
		f := t.Field(e.KeyName())
		if f == nil {
			if bad == "" {
				bad, badSpan = fmt.Sprintf("a record with unknown field %q", e.KeyName()), keySpan(vc.u, e)
			}
			return c.literal(e.Value, vc)
		}
		x, msg, span := c.typedValueAt(e.Value, f.Type, vc)
		if msg != "" && bad == "" {
			bad, badSpan = fmt.Sprintf("a record whose field %q is %s", e.KeyName(), msg), span
		}
		return x
	})
	if bad == "" {
		for _, f := range t.Fields {
			if _, ok := out.Get(f.Name); !ok && !f.Type.Optional {
				bad = fmt.Sprintf("a record without field %q", f.Name)
				break
			}
		}
	}
	return out, bad, badSpan
}

// keySpan returns the span of a map entry's key.
func keySpan(u *unit, e *ast.MapEntry) lang.Span {
	if e.Key != nil {
		return u.nodeSpan(ast.SpanOf(e.Key.Pos, e.Key.EndPos))
	}
	return u.lines.Span(e.Pos.Offset, e.Pos.Offset+len(e.Ident))
}

// commonParams returns the attributes every stage of st's kind takes
// besides its component's.
func commonParams(st *stage) []stdlib.Param {
	ps := []stdlib.Param{
		{Name: "tasks", Type: stdlib.Int},
		{Name: "on_error", Type: stdlib.AnyValue},
		{Name: "lint", Type: stdlib.Block(stdlib.Param{Name: "allow", Type: stdlib.ListOf(stdlib.String)})},
	}
	if st.kind == stdlib.SinkKind {
		ps = append(ps,
			stdlib.Param{Name: "delivery", Type: stdlib.Enum(string(stdlib.ExactlyOnce), string(stdlib.AtLeastOnce), string(stdlib.AtMostOnce))},
			stdlib.Param{Name: "partition_by", Type: stdlib.AnyValue})
	}
	if st.spec != nil && st.spec.Schema && st.spec.Param("schema") == nil {
		ps = append(ps, stdlib.Param{Name: "schema", Type: stdlib.Schema})
	}
	if st.component == "route" && st.spec.Param("mode") == nil {
		ps = append(ps, stdlib.Param{Name: "mode", Type: stdlib.Enum("first", "all"), Default: stdlib.Ident("first")})
	}
	return ps
}

// topParams returns every top-level attribute st takes. The list depends
// only on the stage's spec and kind, so it is built once per spec and
// shared: callers must not modify it.
func (c *checker) topParams(st *stage) []stdlib.Param {
	k := topKey{st.spec, st.kind, st.component}
	if ps, ok := c.tops[k]; ok {
		return ps
	}
	ps := append(slices.Clone(st.spec.Params), commonParams(st)...)
	if c.tops == nil {
		c.tops = map[topKey][]stdlib.Param{}
	}
	c.tops[k] = ps
	return ps
}

// topKey identifies what topParams depends on.
type topKey struct {
	spec      *stdlib.Spec
	kind      stdlib.Kind
	component string
}

func findParam(ps []stdlib.Param, name string) *stdlib.Param {
	for i := range ps {
		if ps[i].Name == name {
			return &ps[i]
		}
	}
	return nil
}

func paramNames(ps []stdlib.Param) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

// readBody sorts a stage's body items into attributes, expressions and
// keep/drop lists.
func (c *checker) readBody(st *stage, items []item) {
	comp := st.component
	misplaced := func(it item, what string) {
		span := it.vc.u.nodeSpan(ast.SpanOf(it.b.Pos, it.b.EndPos))
		d := lang.Errorf(lang.MisplacedItem, span, "%s is not allowed in %s %q (component %q)", what, st.kind, st.name, comp)
		switch what {
		case "where":
			d.Detail = "where belongs in a filter"
		case "case", "else":
			d.Detail = what + " belongs in a route"
		case "keep", "drop", ":=":
			d.Detail = what + " belongs in a map"
		}
		c.add(d, it.vc.rel)
	}
	fromDef := func(it item) bool { return it.vc.def != nil }
	// Attributes set in a def may be overridden at the use site.
	useSite := map[string]bool{}
	for _, it := range items {
		if !fromDef(it) && it.b.Member != nil && it.b.Member.Value != nil {
			useSite[it.b.Member.Path.String()] = true
		}
	}
	ports := map[string]lang.Span{}
	for _, it := range items {
		b, vc, u := it.b, it.vc, it.vc.u
		switch {
		case b.Where != nil:
			if comp != "filter" {
				misplaced(it, "where")
				continue
			}
			st.wheres = append(st.wheres, &exprItem{kind: ir.WhereExpr, e: b.Where, vc: vc, span: u.nodeSpan(ast.SpanOf(b.Where.Pos, b.Where.EndPos))})
		case b.Case != nil:
			if comp != "route" {
				misplaced(it, "case")
				continue
			}
			port := b.Case.Port.Name
			span := u.nodeSpan(ast.SpanOf(b.Case.Port.Pos, b.Case.Port.EndPos))
			if first, dup := ports[port]; dup {
				d := lang.Errorf(lang.DuplicateName, span, "port %q is already defined", port)
				d.Related = []lang.Related{{Span: first, Message: "first defined here"}}
				c.add(d, vc.rel)
				continue
			}
			ports[port] = span
			st.cases = append(st.cases, &exprItem{kind: ir.CaseExpr, target: port, e: b.Case.When, vc: vc, span: span})
		case b.Else != nil:
			if comp != "route" {
				misplaced(it, "else")
				continue
			}
			span := u.nodeSpan(ast.SpanOf(b.Else.Pos, b.Else.EndPos))
			if st.elsePort != "" {
				d := lang.Errorf(lang.DuplicateAttribute, span, "route %q has two else ports", st.name)
				d.Related = []lang.Related{{Span: st.elseSpan, Message: "first defined here"}}
				c.add(d, vc.rel)
				continue
			}
			if first, dup := ports[b.Else.Name]; dup {
				d := lang.Errorf(lang.DuplicateName, span, "port %q is already defined", b.Else.Name)
				d.Related = []lang.Related{{Span: first, Message: "first defined here"}}
				c.add(d, vc.rel)
				continue
			}
			ports[b.Else.Name] = span
			st.elsePort, st.elseSpan = b.Else.Name, span
		case b.Keep != nil, b.Drop != nil:
			what, paths := "keep", b.Keep
			if b.Drop != nil {
				what, paths = "drop", b.Drop
			}
			if comp != "map" {
				misplaced(it, what)
				continue
			}
			for _, p := range paths {
				pi := &pathItem{path: p.Parts, span: u.nodeSpan(ast.SpanOf(p.Pos, p.EndPos)), vc: vc}
				if what == "keep" {
					st.keep = append(st.keep, pi)
				} else {
					st.drop = append(st.drop, pi)
				}
			}
		case b.Member != nil && b.Member.Assign != nil:
			m := b.Member
			span := u.nodeSpan(ast.SpanOf(m.Path.Pos, m.Path.EndPos))
			var want *types.Type
			if m.Type != nil {
				want = c.resolveType(u, m.Type, vc.rel)
			}
			ei := &exprItem{target: m.Path.String(), path: m.Path.Parts, e: m.Assign, want: want, span: span, vc: vc}
			switch {
			case comp == "map":
				ei.kind = ir.AssignExpr
				for _, prev := range st.assigns {
					if prev.target == ei.target {
						d := lang.Errorf(lang.DuplicateAttribute, span, "field %q is assigned twice", ei.target)
						d.Related = []lang.Related{{Span: prev.span, Message: "first assigned here"}}
						c.add(d, vc.rel)
					}
				}
				if reserved[m.Path.Parts[0]] && (m.Path.Parts[0] == "meta" || m.Path.Parts[0] == "params") {
					c.add(lang.Errorf(lang.ReservedName, span, "field name %q is reserved", m.Path.Parts[0]), vc.rel)
					continue
				}
				st.assigns = append(st.assigns, ei)
			case len(m.Path.Parts) == 1 && st.spec.Param(m.Path.Parts[0]) != nil && st.spec.Param(m.Path.Parts[0]).Expr:
				ei.kind = ir.AttrExpr
				if c.setFlat(st, m.Path.Parts, st.spec.Param(m.Path.Parts[0]), nil, span, span, it, useSite) {
					st.attrExpr = append(st.attrExpr, ei)
				}
			default:
				d := lang.Errorf(lang.MisplacedItem, span, ":= is not allowed for %q in %s %q (component %q)", ei.target, st.kind, st.name, comp)
				if st.spec.Param(m.Path.Parts[0]) != nil {
					d.Detail = fmt.Sprintf("%q is static: write %s = value", ei.target, ei.target)
				} else if comp != "map" {
					d.Detail = ":= fields belong in a map"
				}
				c.add(d, vc.rel)
			}
		case b.Member != nil:
			c.member(st, c.topParams(st), nil, b.Member, it, useSite)
		}
	}
}

// member reads an attribute (path = value) or nested block (name { ... })
// against params, the attributes taken at prefix.
func (c *checker) member(st *stage, params []stdlib.Param, prefix []string, m *ast.Member, it item, useSite map[string]bool) {
	u, vc := it.vc.u, it.vc
	nameSpan := u.nodeSpan(ast.SpanOf(m.Path.Pos, m.Path.EndPos))
	ps := params
	var p *stdlib.Param
	for i, part := range m.Path.Parts {
		p = findParam(ps, part)
		full := strings.Join(append(slices.Clone(prefix), m.Path.Parts[:i+1]...), ".")
		if p == nil {
			d := lang.Errorf(lang.UnknownAttribute, nameSpan, "unknown attribute %q for %s %q", full, st.component, st.name)
			if len(prefix)+i == 0 {
				d.Message = fmt.Sprintf("%s %q (%s) has no attribute %q", st.kind, st.name, st.component, full)
			}
			d.Detail = suggest(part, paramNames(ps))
			c.add(d, vc.rel)
			return
		}
		if i < len(m.Path.Parts)-1 {
			if p.Type.Kind != stdlib.BlockParam {
				c.add(lang.Errorf(lang.AttributeType, nameSpan, "attribute %q is not a block", full), vc.rel)
				return
			}
			ps = p.Type.Block
		}
	}
	path := append(slices.Clone(prefix), m.Path.Parts...)
	if m.Block && p.Type.Kind == stdlib.MapParam {
		c.setFlat(st, path, p, c.mapFromBlock(m, *p.Type.Elem, strings.Join(path, "."), vc), nameSpan, nameSpan, it, useSite)
		return
	}
	if m.Block {
		if p.Type.Kind != stdlib.BlockParam {
			c.add(lang.Errorf(lang.AttributeType, nameSpan, "attribute %q takes %s, not a block", strings.Join(path, "."), articled(p.Type)), vc.rel)
			return
		}
		c.setFlat(st, path, p, ir.Map{}, nameSpan, nameSpan, it, nil)
		for _, b := range m.Items {
			if b.Member == nil || b.Member.Assign != nil {
				c.add(lang.Errorf(lang.MisplacedItem, u.nodeSpan(ast.SpanOf(b.Pos, b.EndPos)),
					"only attributes are allowed in block %q", strings.Join(path, ".")), vc.rel)
				continue
			}
			c.member(st, p.Type.Block, path, b.Member, it, useSite)
		}
		return
	}
	v := m.Value
	if p.Type.Kind == stdlib.BlockParam && v.Map != nil {
		c.setFlat(st, path, p, ir.Map{}, valueSpan(u, v), nameSpan, it, nil)
		for _, e := range v.Map.Entries {
			c.entryAsMember(st, p.Type.Block, path, e, it)
		}
		return
	}
	var val any
	var ok bool
	if len(path) == 1 && path[0] == "on_error" {
		val, ok = c.onError(st, v, vc)
	} else {
		val, ok = c.convert(v, p.Type, strings.Join(path, "."), vc)
	}
	if !ok {
		// Record the attribute anyway so it is not also reported missing.
		val = nil
	}
	if vc.def != nil && useSite[strings.Join(m.Path.Parts, ".")] && len(prefix) == 0 {
		return // overridden at the use site
	}
	c.setFlat(st, path, p, val, valueSpan(u, v), nameSpan, it, useSite)
}

// entryAsMember reads one entry of a block given as a map literal.
func (c *checker) entryAsMember(st *stage, params []stdlib.Param, prefix []string, e *ast.MapEntry, it item) {
	u, vc := it.vc.u, it.vc
	span := u.nodeSpan(ast.SpanOf(e.Pos, e.EndPos))
	name := e.KeyName()
	p := findParam(params, name)
	full := strings.Join(append(slices.Clone(prefix), name), ".")
	if p == nil {
		d := lang.Errorf(lang.UnknownAttribute, span, "unknown attribute %q for %s %q", full, st.component, st.name)
		d.Detail = suggest(name, paramNames(params))
		c.add(d, vc.rel)
		return
	}
	path := append(slices.Clone(prefix), name)
	if p.Type.Kind == stdlib.BlockParam && e.Value.Map != nil {
		c.setFlat(st, path, p, ir.Map{}, valueSpan(u, e.Value), span, it, nil)
		for _, sub := range e.Value.Map.Entries {
			c.entryAsMember(st, p.Type.Block, path, sub, it)
		}
		return
	}
	val, _ := c.convert(e.Value, p.Type, full, vc)
	c.setFlat(st, path, p, val, valueSpan(u, e.Value), span, it, nil)
}

// setFlat records attribute path; it reports a duplicate and returns false.
// Blocks (value ir.Map{}) may be opened more than once.
func (c *checker) setFlat(st *stage, path []string, p *stdlib.Param, val any, span, nameSpan lang.Span, it item, _ map[string]bool) bool {
	key := strings.Join(path, ".")
	_, isBlock := val.(ir.Map)
	isBlock = isBlock && p.Type.Kind == stdlib.BlockParam
	if prev, dup := st.flatSeen[key]; dup {
		if isBlock && prev.param.Type.Kind == stdlib.BlockParam {
			return true
		}
		if prev.fromDef && it.vc.def == nil {
			prev.value, prev.span, prev.name, prev.fromDef = val, span, nameSpan, false
			return true
		}
		d := lang.Errorf(lang.DuplicateAttribute, nameSpan, "attribute %q is set twice", key)
		d.Related = []lang.Related{{Span: prev.name, Message: "first set here"}}
		c.add(d, it.vc.rel)
		return false
	}
	fa := &flatAttr{path: path, param: p, value: val, span: span, name: nameSpan, fromDef: it.vc.def != nil, relv: it.vc.rel}
	st.flatSeen[key] = fa
	st.flat = append(st.flat, fa)
	return true
}

// onError reads an on_error policy: fail | skip | dead_letter(sink) |
// retry(max = N, backoff = D, then = policy).
func (c *checker) onError(st *stage, v *ast.Value, vc valCtx) (any, bool) {
	pol, ok := c.policy(st, v, vc, 0)
	if ok {
		st.onError = pol
		st.onErrorSpan = valueSpan(vc.u, v)
	}
	return c.literal(v, vc), ok
}

func (c *checker) policy(st *stage, v *ast.Value, vc valCtx, depth int) (*ir.ErrorPolicy, bool) {
	span := valueSpan(vc.u, v)
	bad := func(format string, args ...any) (*ir.ErrorPolicy, bool) {
		d := lang.Errorf(lang.AttributeType, span, format, args...)
		d.Detail = "on_error takes fail, skip, dead_letter(sink) or retry(max = N, backoff = D, then = policy)"
		c.add(d, vc.rel)
		return nil, false
	}
	if v.Ref == nil || len(v.Ref.Name.Parts) != 1 {
		return bad("on_error takes an error policy, not %s", describe(v))
	}
	name := v.Ref.Name.Parts[0]
	switch name {
	case string(stdlib.ActionFail), string(stdlib.ActionSkip):
		if v.Ref.Call {
			return bad("%s takes no arguments", name)
		}
		return &ir.ErrorPolicy{Action: stdlib.Action(name)}, true
	case string(stdlib.ActionDeadLetter):
		if !v.Ref.Call || len(v.Ref.Args) != 1 || v.Ref.Args[0].Value.Ref == nil || v.Ref.Args[0].Value.Ref.Call ||
			len(v.Ref.Args[0].Value.Ref.Name.Parts) != 1 || (v.Ref.Args[0].Name != "" && v.Ref.Args[0].Name != "sink") {
			return bad("dead_letter takes one sink name: dead_letter(dlq)")
		}
		a := v.Ref.Args[0].Value
		target := a.Ref.Name.Parts[0]
		st.dlTargets = append(st.dlTargets, dlTarget{name: target, span: valueSpan(vc.u, a), rel: vc.rel})
		return &ir.ErrorPolicy{Action: stdlib.ActionDeadLetter, Target: target}, true
	case string(stdlib.ActionRetry):
		if depth > 0 {
			return bad("then cannot retry again")
		}
		pol := &ir.ErrorPolicy{Action: stdlib.ActionRetry, Max: 3, Backoff: time.Second}
		ok := true
		for _, a := range v.Ref.Args {
			aspan := valueSpan(vc.u, a.Value)
			switch a.Name {
			case "max":
				x, good := c.convert(a.Value, stdlib.Int, "on_error.max", vc)
				if n, isInt := x.(int64); good && isInt {
					if n < 1 {
						c.add(lang.Errorf(lang.BadAttributeValue, aspan, "retry max must be at least 1"), vc.rel)
						ok = false
					}
					pol.Max = int(n)
				}
				ok = ok && good
			case "backoff":
				x, good := c.convert(a.Value, stdlib.Duration, "on_error.backoff", vc)
				if d, isD := x.(time.Duration); good && isD {
					pol.Backoff = d
				}
				ok = ok && good
			case "then":
				then, good := c.policy(st, a.Value, vc, depth+1)
				pol.Then = then
				ok = ok && good
			default:
				d := lang.Errorf(lang.UnknownAttribute, vc.u.nodeSpan(ast.SpanOf(a.Pos, a.EndPos)), "retry takes max, backoff and then, not %q", a.Name)
				d.Detail = suggest(a.Name, []string{"max", "backoff", "then"})
				c.add(d, vc.rel)
				ok = false
			}
		}
		return pol, ok
	}
	d := lang.Errorf(lang.BadAttributeValue, span, "unknown error policy %q", name)
	d.Detail = suggest(name, []string{"fail", "skip", "dead_letter", "retry"})
	if d.Detail == "" {
		d.Detail = "on_error takes fail, skip, dead_letter(sink) or retry(...)"
	}
	c.add(d, vc.rel)
	return nil, false
}

// builtinTransforms are the transforms whose semantics the compiler itself
// implements; a registry that does not describe them gets these specs.
var builtinTransforms = map[string]*stdlib.Spec{
	"filter": {Kind: stdlib.TransformKind, Name: "filter",
		Summary: "keeps the records every where predicate accepts; body: where EXPR, one or more"},
	"map": {Kind: stdlib.TransformKind, Name: "map",
		Summary: "reshapes records; body: keep a, b; drop a, b; field [: type] := EXPR"},
	"route": {Kind: stdlib.TransformKind, Name: "route",
		Summary: "sends records to ports by case predicates; body: case PORT when EXPR; else PORT",
		Params: []stdlib.Param{{Name: "mode", Type: stdlib.Enum("first", "all"), Default: stdlib.Ident("first"),
			Doc: "first: the first matching case only; all: every matching case"}}},
}

// BuiltinTransforms returns the specs of the transforms the compiler
// implements itself (filter, map, route), sorted by name: they are in no
// registry, but are components all the same (pipe connectors lists them).
func BuiltinTransforms() []*stdlib.Spec {
	out := make([]*stdlib.Spec, 0, len(builtinTransforms))
	for _, name := range slices.Sorted(maps.Keys(builtinTransforms)) {
		out = append(out, builtinTransforms[name])
	}
	return out
}

// mapFromBlock reads a map attribute written as a block, name { k = v ... }:
// each item is one entry whose value has kind elem.
func (c *checker) mapFromBlock(m *ast.Member, elem stdlib.ParamType, attr string, vc valCtx) ir.Map {
	u := vc.u
	out := ir.Map{}
	seen := map[string]lang.Span{}
	for _, b := range m.Items {
		span := u.nodeSpan(ast.SpanOf(b.Pos, b.EndPos))
		if b.Member == nil || b.Member.Value == nil || len(b.Member.Path.Parts) != 1 {
			c.add(lang.Errorf(lang.MisplacedItem, span, "only key = value entries are allowed in map %q", attr), vc.rel)
			continue
		}
		key := b.Member.Path.Parts[0]
		keySpan := u.nodeSpan(ast.SpanOf(b.Member.Path.Pos, b.Member.Path.EndPos))
		if prev, dup := seen[key]; dup {
			d := lang.Errorf(lang.DuplicateAttribute, keySpan, "key %q is set twice in %q", key, attr)
			d.Related = []lang.Related{{Span: prev, Message: "first set here"}}
			c.add(d, vc.rel)
			continue
		}
		seen[key] = keySpan
		v, _ := c.convert(b.Member.Value, elem, attr+"."+key, vc)
		out = append(out, ir.MapEntry{Key: key, Value: v})
	}
	return out
}
