package compiler

import (
	"fmt"
	"slices"
	"strings"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
)

// lint reports a warning about st unless st allows code. It returns the
// diagnostic so the caller may set Detail (a scratch value when silenced).
func (c *checker) lint(st *stage, code lang.Code, span lang.Span, rel []lang.Related, format string, args ...any) *lang.Diagnostic {
	if st != nil && st.allow[code] {
		return new(lang.Diagnostic)
	}
	c.add(lang.Warningf(code, span, format, args...), rel)
	return &c.diags[len(c.diags)-1]
}

// graphLints reports the graph and policy lints.
func (c *checker) graphLints() {
	out := map[string][]*edge{}
	in := map[string][]*edge{}
	dlq := map[string]bool{}
	for _, e := range c.edges {
		out[e.from] = append(out[e.from], e)
		in[e.to] = append(in[e.to], e)
		if e.dl {
			dlq[e.to] = true
		}
	}
	// Reachability from sources over all edges.
	reach := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if reach[n] {
			return
		}
		reach[n] = true
		for _, e := range out[n] {
			walk(e.to)
		}
	}
	for _, st := range c.order {
		if st.kind == stdlib.SourceKind {
			walk(st.name)
		}
	}
	for _, st := range c.order {
		if !c.inFlow[st.name] && !dlq[st.name] {
			if st.kind != stdlib.SourceKind {
				continue // no input: PIPE205
			}
			c.lint(st, lang.StageNotInFlow, st.span, nil, "%s %q is not used in any flow", st.kind, st.name).
				Detail = fmt.Sprintf("wire it with a flow line such as ... -> %s", st.name)
			continue
		}
		dataOut := 0
		for _, e := range out[st.name] {
			if !e.dl {
				dataOut++
			}
		}
		if st.kind != stdlib.SinkKind && dataOut == 0 && c.inFlow[st.name] {
			c.lint(st, lang.DeadEnd, st.span, nil, "the output of %s %q goes nowhere: its records are discarded", st.kind, st.name)
		}
		if st.kind == stdlib.SinkKind && len(in[st.name]) > 0 && !reach[st.name] {
			c.lint(st, lang.SinkUnreachable, st.span, nil, "no source reaches sink %q", st.name)
		}
		if st.component == "route" && st.ok {
			wired := map[string]bool{}
			for _, e := range out[st.name] {
				wired[e.port] = true
			}
			// Every edge out of a route names a port (PIPE202 otherwise).
			for _, cs := range st.cases {
				if !wired[cs.target] {
					c.lint(st, lang.PortUnwired, cs.span, cs.vc.rel, "port %q of route %q is not wired: its records are discarded", cs.target, st.name)
				}
			}
			if st.elsePort != "" && !wired[st.elsePort] {
				c.lint(st, lang.PortUnwired, st.elseSpan, nil, "port %q of route %q is not wired: its records are discarded", st.elsePort, st.name)
			}
			if st.elsePort == "" && st.mode != "all" {
				c.lint(st, lang.RouteNoElse, st.span, st.instRel, "route %q has no else port: records no case matches are dropped", st.name).
					Detail = "add else <port>"
			}
			seen := map[string]*exprItem{}
			for _, cs := range st.cases {
				key := strings.Join(strings.Fields(cs.e.Text), " ")
				if prev := seen[key]; prev != nil {
					d := c.lint(st, lang.DuplicateCase, cs.span, cs.vc.rel, "case %q has the same condition as case %q", cs.target, prev.target)
					d.Related = append(d.Related, lang.Related{Span: prev.span, Message: "first case here"})
					continue
				}
				seen[key] = cs
			}
		}
		if p := st.onError; p != nil {
			for q := p; q != nil; q = q.Then {
				if q.Action == stdlib.ActionSkip {
					c.lint(st, lang.SkipWithoutDLQ, st.onErrorSpan, nil, "on_error = skip drops failed records of %q silently", st.name).
						Detail = "use dead_letter(sink) to keep them"
				}
			}
			if p.Action == stdlib.ActionRetry && p.Then == nil {
				c.lint(st, lang.RetryWithoutThen, st.onErrorSpan, nil, "retry without then fails the pipeline when retries run out").
					Detail = "add then = dead_letter(sink) or then = skip"
			}
			c.policyNeverFires(st)
		}
		for _, t := range st.dlTargets {
			if dst := c.stages[t.name]; dst != nil && dst != st && dst.ok && dst.kind == stdlib.SinkKind && dst.spec.Discards {
				c.lint(st, lang.DeadLetterDiscards, t.span, t.rel, "dead-letter sink %q (%s) drops what it receives: failed records of %q are lost silently", t.name, dst.component, st.name).
					Detail = "dead-letter into a sink that keeps them (a file, a topic), or write on_error = skip if losing them is meant"
			}
		}
	}
}

// policyNeverFires reports an on_error policy on a stage that never fails a
// record: its component says so, or it is a filter, map or route on typed
// records whose expressions cannot fail.
func (c *checker) policyNeverFires(st *stage) {
	var why string
	switch {
	case !st.ok:
		return
	case st.spec.NoRecordErrors:
		why = fmt.Sprintf("%s never fails a record", st.component)
	case (st.component == "filter" || st.component == "map" || st.component == "route") && st.typed && st.in != nil && !st.mayFail:
		why = fmt.Sprintf("no expression of %s %q can fail on its records", st.component, st.name)
	default:
		return
	}
	c.lint(st, lang.PolicyNeverFires, st.onErrorSpan, nil, "on_error of %q never fires: %s", st.name, why).
		Detail = "remove it, or keep it with lint { allow = [\"PIPE434\"] } if the stage will change"
}

// unusedLints reports unused imports, defs, schemas and def parameters of
// the main file.
//
// A file without stages is a library: its schemas and defs are what it
// offers to importers, so only their parameters are checked.
func (c *checker) unusedLints() {
	c.unusedParamLints()
	u := c.main
	library := true
	for _, it := range u.file.Items {
		if it.Stage != nil || it.Flow != nil {
			library = false
			break
		}
	}
	for _, alias := range slices.Sorted(mapKeys(u.imports)) {
		// An import that failed to load was reported already.
		if im := u.imports[alias]; !im.used && im.u != nil {
			c.warnf(lang.Unused, im.span, "import %q is not used", im.alias)
		}
	}
	for _, it := range u.file.Items {
		switch {
		case it.Schema != nil:
			if si := u.schemas[it.Schema.Name.Name]; si != nil && si.decl == it.Schema && !si.used && !library {
				c.warnf(lang.Unused, si.span, "schema %q is not used", si.decl.Name)
			}
		case it.Def != nil:
			di := u.defs[it.Def.Name.Name]
			if di == nil || di.decl != it.Def {
				continue
			}
			if !di.used && !library {
				c.warnf(lang.Unused, di.span, "def %q is not used", di.decl.Name)
				continue
			}
			if !di.used {
				// Never instantiated here: find parameter uses in the body's text.
				body := string(di.u.src[di.decl.Pos.Offset:min(di.decl.EndPos.Offset, len(di.u.src))])
				for _, p := range di.decl.Params {
					if strings.Contains(body, "params."+p.Name.Name) || strings.Contains(body, "${param:"+p.Name.Name+"}") {
						di.paramUsed[p.Name.Name] = true
					}
				}
			}
			c.unusedParams(di)
		}
	}
	// Parameters of imported defs that are used here.
	var keys []string
	for k := range c.units {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		iu := c.units[k]
		for _, it := range iu.file.Items {
			if it.Def != nil {
				if di := iu.defs[it.Def.Name.Name]; di != nil && di.decl == it.Def && di.used {
					c.unusedParams(di)
				}
			}
		}
	}
}

func (c *checker) unusedParams(di *defInfo) {
	for _, p := range di.decl.Params {
		if !di.paramUsed[p.Name.Name] {
			c.warnf(lang.Unused, di.u.identSpan(p.Name), "parameter %q of def %q is not used", p.Name, di.decl.Name)
		}
	}
}

// ApplyLintPolicy returns diags with the denied warnings turned into errors:
// those whose code is in deny, or every lint when denyAll is set.
func ApplyLintPolicy(diags lang.Diagnostics, deny []lang.Code, denyAll bool) lang.Diagnostics {
	out := make(lang.Diagnostics, len(diags))
	copy(out, diags)
	for i, d := range out {
		if d.Severity != lang.Warning {
			continue
		}
		if (denyAll && d.Code.IsLint()) || slices.Contains(deny, d.Code) {
			out[i].Severity = lang.Error
		}
	}
	return out
}

// Silence returns diags without the warnings whose code is in allow.
func Silence(diags lang.Diagnostics, allow []lang.Code) lang.Diagnostics {
	var out lang.Diagnostics
	for _, d := range diags {
		if d.Severity == lang.Warning && slices.Contains(allow, d.Code) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// Untested returns a PIPE480 warning for every source and sink of prog that
// no inline test covers (no given for a source, no expect for a sink); the
// CLI reports them under --require-tests.
func Untested(prog *Program) lang.Diagnostics {
	if prog == nil {
		return nil
	}
	covered := map[string]bool{}
	for _, t := range prog.Tests {
		for _, g := range t.Given {
			covered[g.Source] = true
		}
		for _, e := range t.Expect {
			name, _, _ := strings.Cut(e.Target, ".")
			covered[name] = true
		}
	}
	var out lang.Diagnostics
	for _, s := range prog.Stages {
		if s.Kind == stdlib.TransformKind || covered[s.Name] {
			continue
		}
		out = append(out, lang.Warningf(lang.Untested, s.Span, "%s %q is not covered by any test", s.Kind, s.Name))
	}
	out.Sort()
	return out
}
