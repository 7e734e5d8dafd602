package compiler

import (
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
			case ti.Member != nil:
				m := ti.Member
				nspan := u.nodeSpan(ast.SpanOf(m.Path.Pos, m.Path.EndPos))
				if m.Path.String() != "clock" || m.Value == nil {
					d := c.errorf(lang.UnknownAttribute, nspan, "a test has no attribute %q", m.Path.String())
					d.Detail = suggest(m.Path.String(), []string{"clock"})
					continue
				}
				v, ok := c.convert(m.Value, stdlib.Time, "clock", vc)
				if ok {
					it.Clock, _ = v.(string)
				}
			}
		}
		c.prog.Tests = append(c.prog.Tests, it)
	}
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
	st := c.stages[e.Target.Stage]
	if st == nil {
		d := c.errorf(lang.UnknownName, tspan, "unknown stage %q", e.Target.Stage)
		d.Detail = suggest(e.Target.Stage, c.stageNames())
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
		in = st.in
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
