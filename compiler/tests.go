package compiler

import (
	"fmt"
	"slices"
	"strconv"

	"pipe.dev/pipe/compiler/exprs"
	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// readTests checks the file's inline tests against the graph and types.
func (c *checker) readTests() {
	u := c.main
	names := map[string]lang.Span{}
	for _, it := range u.file.Items {
		t := it.Test
		if t == nil {
			continue
		}
		span := u.nodeSpan(ast.SpanOf(t.Pos, t.EndPos))
		name := t.Name.Value()
		if prev, dup := names[name]; dup {
			d := c.errorf(lang.DuplicateName, u.nodeSpan(ast.SpanOf(t.Name.Pos, t.Name.EndPos)), "test %q is already defined", name)
			d.Related = []lang.Related{{Span: prev, Message: "first defined here"}}
		}
		names[name] = u.nodeSpan(ast.SpanOf(t.Name.Pos, t.Name.EndPos))
		it := &ir.Test{Name: name, Span: span}
		vc := valCtx{u: u, noSecret: "a test"}
		for _, ti := range t.Items {
			switch {
			case ti.Given != nil:
				if g := c.given(ti.Given, vc); g != nil {
					it.Given = append(it.Given, g)
				}
			case ti.Expect != nil:
				if e := c.expect(ti.Expect, vc); e != nil {
					it.Expect = append(it.Expect, e)
				}
			case ti.Member != nil && ti.Member.Path.String() == "params" && (ti.Member.Block || ti.Member.Value != nil && ti.Member.Value.Map != nil):
				it.Params = c.testParams(ti.Member, it.Params, vc)
			case ti.Member != nil:
				m := ti.Member
				nspan := u.nodeSpan(ast.SpanOf(m.Path.Pos, m.Path.EndPos))
				if m.Path.String() != "clock" || m.Value == nil {
					d := c.errorf(lang.UnknownAttribute, nspan, "a test has no attribute %q", m.Path.String())
					d.Detail = suggest(m.Path.String(), []string{"clock", "params"})
					continue
				}
				v, ok := c.convert(m.Value, stdlib.Time, "clock", vc)
				if ok {
					it.Clock, _ = v.(string)
				}
			}
		}
		// A parameter read when the run starts has no value in a test
		// unless the test gives one.
		for _, p := range c.prog.Params {
			if _, ref := p.Value.(ir.Secret); ref {
				if _, set := it.Params.Get(p.Name); !set {
					c.errorf(lang.BadTestRecord, names[name], "test %q needs a value for param %q, which is read when the run starts", name, p.Name).
						Detail = fmt.Sprintf("set it in the test: params { %s = … }", p.Name)
				}
			}
		}
		c.prog.Tests = append(c.prog.Tests, it)
	}
}

// testParams reads a test's params { name = value … } (or params = {…})
// into ps: values of the file's parameters for the test.
func (c *checker) testParams(m *ast.Member, ps ir.Map, vc valCtx) ir.Map {
	u := c.main
	type entry struct {
		name  string
		span  lang.Span
		value *ast.Value
	}
	var entries []entry
	for _, b := range m.Items {
		if b.Member == nil || b.Member.Value == nil || len(b.Member.Path.Parts) != 1 {
			c.errorf(lang.MisplacedItem, u.nodeSpan(ast.SpanOf(b.Pos, b.EndPos)), "only name = value entries are allowed in params")
			continue
		}
		entries = append(entries, entry{b.Member.Path.Parts[0], u.nodeSpan(ast.SpanOf(b.Member.Path.Pos, b.Member.Path.EndPos)), b.Member.Value})
	}
	if m.Value != nil {
		for _, e := range m.Value.Map.Entries {
			entries = append(entries, entry{e.KeyName(), keySpan(u, e), e.Value})
		}
	}
	for _, e := range entries {
		i := slices.IndexFunc(c.prog.Params, func(p *ir.Param) bool { return p.Name == e.name })
		if i < 0 {
			var names []string
			for _, p := range c.prog.Params {
				names = append(names, p.Name)
			}
			c.errorf(lang.UnknownName, e.span, "unknown param %q", e.name).Detail = suggest(e.name, names)
			continue
		}
		if _, dup := ps.Get(e.name); dup {
			c.errorf(lang.DuplicateAttribute, e.span, "param %q is set twice", e.name)
			continue
		}
		t := c.prog.Params[i].Type
		if t.Kind == types.Secret {
			t = types.StringType // a test's key is a string
		}
		v, msg := c.typedValue(e.value, t, vc)
		if msg != "" {
			c.errorf(lang.BadTestRecord, valueSpan(u, e.value), "param %q takes %s, not %s", e.name, t, msg)
			continue
		}
		ps = append(ps, ir.MapEntry{Key: e.name, Value: v})
	}
	return ps
}

func (c *checker) given(g *ast.Given, vc valCtx) *ir.Given {
	u := c.main
	span := u.nodeSpan(ast.SpanOf(g.Source.Pos, g.Source.EndPos))
	st := c.stages[g.Source.Name]
	if st == nil {
		d := c.errorf(lang.UnknownName, span, "unknown stage %q", g.Source.Name)
		d.Detail = suggest(g.Source.Name, c.stageNames())
		return nil
	}
	if st.kind != stdlib.SourceKind {
		c.errorf(lang.BadTestRecord, span, "given needs a source, and %q is a %s", st.name, st.kind)
		return nil
	}
	out := &ir.Given{Source: st.name, Span: u.nodeSpan(ast.SpanOf(g.Pos, g.EndPos))}
	for _, rec := range g.Records.Items {
		out.Records = append(out.Records, c.testRecord(rec, st.out, st.typed, vc, true))
	}
	return out
}

// testRecord converts a record literal, checking it against t when typed
// (all fields for given records, a subset for expected ones).
func (c *checker) testRecord(v *ast.Value, t *types.Type, typed bool, vc valCtx, full bool) ir.Map {
	span := valueSpan(vc.u, v)
	if v.Map == nil {
		c.errorf(lang.BadTestRecord, span, "a test record is a map { field: value }, not %s", describe(v))
		return nil
	}
	if !typed || t == nil || t.Kind != types.Record {
		m, _ := c.literal(v, vc).(ir.Map)
		return m
	}
	check := t
	if !full {
		// Expected records list a subset of the fields.
		cp := *t
		cp.Fields = nil
		for _, f := range t.Fields {
			cp.Fields = append(cp.Fields, &types.Field{Name: f.Name, Type: f.Type.WithOptional(true)})
		}
		check = &cp
	}
	m, msg, at := c.recordValue(v.Map, check, vc)
	if msg != "" {
		if !at.IsValid() {
			at = span // a missing field: the record as a whole
		}
		d := c.errorf(lang.BadTestRecord, at, "test record does not fit %s: it is %s", t, msg)
		d.Detail = "type: " + t.String()
	}
	return m
}

func (c *checker) expect(e *ast.Expect, vc valCtx) *ir.Expect {
	u := c.main
	tspan := u.nodeSpan(ast.SpanOf(e.Target.Pos, e.Target.EndPos))
	st := c.stages[e.Target.Stage.Name]
	if st == nil {
		d := c.errorf(lang.UnknownName, tspan, "unknown stage %q", e.Target.Stage)
		d.Detail = suggest(e.Target.Stage.Name, c.stageNames())
		return nil
	}
	var in *types.Type
	typed := st.typed
	switch {
	case e.Target.Port != "":
		if st.component != "route" {
			c.errorf(lang.BadTestRecord, tspan, "%q is not a route: it has no port %q", st.name, e.Target.Port)
			return nil
		}
		ports := st.portNames()
		found := false
		for _, p := range ports {
			found = found || p == e.Target.Port
		}
		if !found {
			d := c.errorf(lang.UnknownName, tspan, "route %q has no port %q", st.name, e.Target.Port)
			d.Detail = suggest(e.Target.Port, ports)
			return nil
		}
		in = st.outType(e.Target.Port)
	case st.kind != stdlib.SinkKind:
		c.errorf(lang.BadTestRecord, tspan, "expect needs a sink or a route port, and %q is a %s", st.name, st.kind)
		return nil
	default:
		in = st.in
	}
	out := &ir.Expect{Target: e.Target.String(), Span: u.nodeSpan(ast.SpanOf(e.Pos, e.EndPos)), Empty: e.Empty}
	switch {
	case e.Records != nil:
		for _, rec := range e.Records.Items {
			out.Records = append(out.Records, c.testRecord(rec, in, typed, vc, false))
		}
	case e.Count != nil:
		n, err := strconv.Atoi(e.Count.Text)
		if err != nil || e.Count.Neg || e.Count.IsFloat() {
			c.errorf(lang.BadTestRecord, u.nodeSpan(ast.SpanOf(e.Count.Pos, e.Count.EndPos)), "count takes a non-negative int")
			return nil
		}
		out.Count = &n
	case e.Where != nil:
		start := e.Where.Pos.Offset
		text := e.Where.Text
		var input *types.Type
		if typed {
			input = in
		}
		res, issues := c.exprs.Check(text, exprs.Context{Kind: plan.WhereExpr, Input: input})
		for _, is := range issues {
			d := lang.Diagnostic{Severity: is.Severity, Code: is.Code, Span: u.lines.Span(start+is.Start, start+max(is.End, is.Start)), Message: is.Message, Detail: is.Detail}
			if d.Severity == 0 {
				d.Severity = lang.Error
			}
			if d.Severity == lang.Warning {
				continue // lints do not apply to test expectations
			}
			c.diags = append(c.diags, d)
		}
		out.Where = &ir.Expr{Kind: ir.WhereExpr, Source: text, Exec: text, Type: res.Type, Span: u.lines.Span(start, start+len(text))}
	}
	return out
}
