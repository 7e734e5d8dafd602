package compiler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/stdlib"
)

// edge is a flow edge with the span that wrote it.
type edge struct {
	from, port, to string
	dl             bool
	span           lang.Span
}

// buildGraph reads the flow lines and dead-letter policies into edges.
func (c *checker) buildGraph() {
	u := c.main
	seen := map[[3]string]bool{}
	for _, it := range u.file.Items {
		f := it.Flow
		if f == nil {
			continue
		}
		for i := 0; i+1 < len(f.Nodes); i++ {
			left, right := f.Nodes[i], f.Nodes[i+1]
			if len(left.Refs) > 1 && len(right.Refs) > 1 {
				span := u.nodeSpan(ast.SpanOf(left.Pos, right.EndPos))
				if st := c.stages[right.Refs[0].Stage.Name]; st != nil {
					c.lint(st, lang.CrossProduct, span, nil, "%s -> %s wires every input to every output", flowNodeString(left), flowNodeString(right)).
						Detail = "write one flow line per edge if that is not meant"
				} else {
					c.warnf(lang.CrossProduct, span, "%s -> %s wires every input to every output", flowNodeString(left), flowNodeString(right))
				}
			}
			for _, l := range left.Refs {
				from, okL := c.flowRef(l, true)
				for _, r := range right.Refs {
					to, okR := c.flowRef(r, false)
					if !okL || !okR {
						continue
					}
					span := u.nodeSpan(ast.SpanOf(l.Pos, r.EndPos))
					if from.kind == stdlib.SinkKind {
						c.errorf(lang.BadEdge, u.nodeSpan(ast.SpanOf(l.Pos, l.EndPos)), "sink %q has no output: it cannot flow into %q", from.name, to.name)
						continue
					}
					if from.component == "route" && l.Port == "" {
						d := c.errorf(lang.BadEdge, u.nodeSpan(ast.SpanOf(l.Pos, l.EndPos)), "route %q sends records through its ports: name one, as in %s.<port> -> %s", from.name, from.name, to.name)
						if ports := from.portNames(); len(ports) > 0 {
							d.Detail = "ports: " + strings.Join(ports, ", ")
						}
						continue
					}
					if to.kind == stdlib.SourceKind {
						c.errorf(lang.BadEdge, u.nodeSpan(ast.SpanOf(r.Pos, r.EndPos)), "source %q takes no input: %q cannot flow into it", to.name, from.name)
						continue
					}
					if from == to {
						c.errorf(lang.Cycle, span, "cycle: %s -> %s", from.name, to.name)
						continue
					}
					k := [3]string{from.name, l.Port, to.name}
					if seen[k] {
						continue
					}
					seen[k] = true
					c.edges = append(c.edges, &edge{from: from.name, port: l.Port, to: to.name, span: span})
				}
			}
		}
	}
	// Dead-letter edges.
	for _, st := range c.order {
		for _, t := range st.dlTargets {
			dst := c.stages[t.name]
			if dst == nil {
				d := lang.Errorf(lang.UnknownName, t.span, "unknown stage %q", t.name)
				d.Detail = suggest(t.name, c.stageNames())
				c.add(d, t.rel)
				continue
			}
			if dst.kind != stdlib.SinkKind {
				c.add(lang.Errorf(lang.DeadLetterNotSink, t.span, "dead_letter target %q is a %s, not a sink", t.name, dst.kind), t.rel)
				continue
			}
			if dst == st {
				c.add(lang.Errorf(lang.DeadLetterNotSink, t.span, "sink %q cannot be its own dead-letter sink", t.name), t.rel)
				continue
			}
			k := [3]string{st.name, "\x00dl", dst.name}
			if seen[k] {
				continue
			}
			seen[k] = true
			c.edges = append(c.edges, &edge{from: st.name, to: dst.name, dl: true, span: t.span})
		}
	}
}

func flowNodeString(n *ast.FlowNode) string {
	parts := make([]string, len(n.Refs))
	for i, r := range n.Refs {
		parts[i] = r.String()
	}
	if n.Bracket || len(parts) > 1 {
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return parts[0]
}

func (c *checker) stageNames() []string {
	out := make([]string, len(c.order))
	for i, s := range c.order {
		out[i] = s.name
	}
	return out
}

// flowRef resolves one side of a flow edge.
func (c *checker) flowRef(r *ast.PortRef, isFrom bool) (*stage, bool) {
	u := c.main
	span := u.nodeSpan(ast.SpanOf(r.Pos, r.EndPos))
	st := c.stages[r.Stage.Name]
	if st == nil {
		d := c.errorf(lang.UnknownName, u.identSpan(r.Stage), "unknown stage %q", r.Stage)
		d.Detail = suggest(r.Stage.Name, c.stageNames())
		return nil, false
	}
	if !c.inFlow[st.name] {
		c.inFlow[st.name] = true
		c.flowPos[st.name] = span
	}
	if r.Port == "" {
		return st, true
	}
	if !isFrom {
		c.errorf(lang.BadEdge, span, "%q: a port can only be read from, not flowed into", r.String())
		return nil, false
	}
	if st.component != "route" {
		if st.ok {
			c.errorf(lang.BadEdge, span, "%s %q is not a route: it has no port %q", st.kind, st.name, r.Port)
		}
		return nil, false
	}
	ports := st.portNames()
	if !slices.Contains(ports, r.Port) {
		d := c.errorf(lang.UnknownName, span, "route %q has no port %q", st.name, r.Port)
		d.Detail = suggest(r.Port, ports)
		if d.Detail == "" && len(ports) > 0 {
			d.Detail = "ports: " + strings.Join(ports, ", ")
		}
		return nil, false
	}
	return st, true
}

func (st *stage) portNames() []string {
	var out []string
	for _, cs := range st.cases {
		out = append(out, cs.target)
	}
	if st.elsePort != "" {
		out = append(out, st.elsePort)
	}
	return out
}

// checkGraph reports cycles, stages without input and pipelines without a
// source or sink, and returns the stages in topological order.
func (c *checker) checkGraph() []*stage {
	// Stages are numbered by their place in c.order; every edge joins
	// two of them.
	n := len(c.order)
	idx := make(map[string]int, n)
	for i, st := range c.order {
		idx[st.name] = i
	}
	succ := make([][]*edge, n)
	npred := make([]int, n)
	for _, e := range c.edges {
		succ[idx[e.from]] = append(succ[idx[e.from]], e)
		npred[idx[e.to]]++
	}
	// Cycles (data edges only; dead-letter edges end at sinks).
	const (
		white = iota
		grey
		black
	)
	color := make([]int, n)
	var nodes []int
	reported := map[string]bool{}
	var visit func(v int)
	visit = func(v int) {
		color[v] = grey
		nodes = append(nodes, v)
		for _, e := range succ[v] {
			if e.dl {
				continue
			}
			to := idx[e.to]
			switch color[to] {
			case white:
				visit(to)
			case grey:
				i := slices.Index(nodes, to)
				path := make([]string, 0, len(nodes)-i+1)
				for _, k := range nodes[i:] {
					path = append(path, c.order[k].name)
				}
				path = append(path, e.to)
				if key := cycleKey(path); !reported[key] {
					reported[key] = true
					c.errorf(lang.Cycle, e.span, "cycle: %s", strings.Join(path, " -> "))
				}
			}
		}
		nodes = nodes[:len(nodes)-1]
		color[v] = black
	}
	for v := range c.order {
		if color[v] == white {
			visit(v)
		}
	}

	hasSource, hasSink := false, false
	for v, st := range c.order {
		switch st.kind {
		case stdlib.SourceKind:
			hasSource = true
		case stdlib.SinkKind:
			hasSink = true
		}
		if st.kind != stdlib.SourceKind && npred[v] == 0 {
			// pipe run cannot run it, in a flow or not.
			d := c.errorf(lang.NoInput, st.span, "%s %q has no input", st.kind, st.name)
			d.Detail = fmt.Sprintf("add a flow line into it: ... -> %s", st.name)
			if !c.inFlow[st.name] {
				d.Detail = fmt.Sprintf("it is in no flow: wire it (... -> %s) or remove it", st.name)
			}
		}
	}
	span := lang.Span{File: c.main.name, Start: lang.Pos{Offset: 0, Line: 1, Column: 1}, End: lang.Pos{Offset: 0, Line: 1, Column: 1}}
	if len(c.order) == 0 && !isLibrary(c.main.file) {
		c.errorf(lang.NoSource, span, "the file has no stages: there is nothing to run")
	}
	if len(c.order) > 0 || hasTopLevelFlow(c.main.file) {
		if !hasSource {
			c.errorf(lang.NoSource, span, "the pipeline has no source")
		}
		if !hasSink {
			c.errorf(lang.NoSource, span, "the pipeline has no sink")
		}
	}

	// Topological order: level = longest path from a root; ties by source order.
	level := make([]int, n)
	indeg := slices.Clone(npred)
	done := make([]bool, n)
	var queue []int
	for v := range c.order {
		if indeg[v] == 0 {
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		done[v] = true
		for _, e := range succ[v] {
			to := idx[e.to]
			level[to] = max(level[to], level[v]+1)
			indeg[to]--
			if indeg[to] == 0 {
				queue = append(queue, to)
			}
		}
	}
	perm := make([]int, n)
	for v := range perm {
		perm[v] = v
	}
	slices.SortStableFunc(perm, func(a, b int) int {
		// Stages caught in a cycle go last, in source order.
		if done[a] != done[b] {
			if done[a] {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(level[a], level[b]), cmp.Compare(c.order[a].order, c.order[b].order))
	})
	out := make([]*stage, n)
	for i, v := range perm {
		out[i] = c.order[v]
	}
	return out
}

// isLibrary reports whether f holds only imports, schemas and defs, at
// least one: a library offered to importers, not a pipeline.
func isLibrary(f *ast.File) bool {
	for _, it := range f.Items {
		if it.Import == nil && it.Schema == nil && it.Def == nil {
			return false
		}
	}
	return len(f.Items) > 0
}

func hasTopLevelFlow(f *ast.File) bool {
	for _, it := range f.Items {
		if it.Flow != nil {
			return true
		}
	}
	return false
}

func cycleKey(path []string) string {
	p := slices.Clone(path[:len(path)-1])
	slices.Sort(p)
	return strings.Join(p, ",")
}

// irEdges returns the edges sorted for the IR.
func (c *checker) irEdges() []*ir.Edge {
	out := make([]*ir.Edge, 0, len(c.edges))
	for _, e := range c.edges {
		out = append(out, &ir.Edge{From: e.from, Port: e.port, To: e.to, DeadLetter: e.dl})
	}
	slices.SortFunc(out, func(a, b *ir.Edge) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.Port, b.Port), cmp.Compare(a.To, b.To),
			cmp.Compare(boolInt(a.DeadLetter), boolInt(b.DeadLetter)))
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
