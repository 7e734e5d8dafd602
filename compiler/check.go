package compiler

import (
	"path/filepath"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/stdlib"
)

// check runs every phase on the main file and builds the IR.
func (c *checker) check() *ir.Program {
	c.prog = &ir.Program{File: c.main.name, Checkpoint: 5 * time.Second}
	c.readPipeline()
	c.readParams()
	c.declareStages()
	for _, st := range c.order {
		c.finishAttrs(st)
	}
	c.buildGraph()
	topo := c.checkGraph()
	c.flowTypes(topo)
	c.graphLints()
	c.readTests()
	c.unusedLints()

	for _, st := range topo {
		tasks := st.tasks
		if tasks == 0 {
			tasks = c.prog.Tasks
		}
		if tasks == 0 {
			tasks = 1
		}
		is := &ir.Stage{
			Name: st.name, Kind: st.kind, Component: st.component, Spec: st.spec,
			Span: st.span, Decl: st.declSpan, Def: st.defName, Order: st.order, Tasks: tasks,
			Attrs: st.attrs, Exprs: st.exprs, Ports: portsOf(st), Else: st.elsePort, Mode: st.mode,
			Schema: st.schema, Input: st.in, Output: st.out,
			OnError: st.onError, PartitionBy: st.partitionBy, Params: st.paramList,
		}
		for _, k := range st.keep {
			is.Keep = append(is.Keep, strings.Join(k.path, "."))
		}
		for _, d := range st.drop {
			is.Drop = append(is.Drop, strings.Join(d.path, "."))
		}
		if st.kind == stdlib.SinkKind {
			is.Delivery = st.delivery
		}
		c.prog.Stages = append(c.prog.Stages, is)
	}
	c.prog.Edges = c.irEdges()
	c.checkInstances()
	return c.prog
}

// checkInstances refuses instances > 1 when a stage cannot be shared by
// several instances running at once (stdlib.Spec.Shared): every source
// must share its work out (a kafka source with a group) and every
// exactly_once sink must take a moving partition over from another
// instance (kafka); anything else would be read twice or lose its
// guarantee.
func (c *checker) checkInstances() {
	if c.prog.Instances <= 1 {
		return
	}
	for _, st := range c.order {
		if st.spec == nil {
			continue
		}
		var why string
		switch {
		case st.kind == stdlib.SourceKind:
			why = "every instance would read all of source %q (%s): only a source that shares its work out (kafka with a group) may run in several instances"
		case st.kind == stdlib.SinkKind && st.delivery == stdlib.ExactlyOnce:
			why = "sink %q (%s) cannot keep exactly_once across instances that share the work: only one that takes a moving partition over (kafka) may"
		default:
			continue
		}
		if st.spec.Shared != nil && st.spec.Shared(plainAttrs(st.attrs, st.schema)) {
			continue
		}
		d := c.errorf(lang.InstancesUnshared, c.instancesSpan, why, st.name, st.component)
		d.Detail = "set instances = 1 (failover still moves the one instance), or split the pipeline"
		d.Related = []lang.Related{{Span: st.span, Message: "this stage"}}
	}
}

func portsOf(st *stage) []string {
	var out []string
	for _, cs := range st.cases {
		out = append(out, cs.target)
	}
	return out
}

// nameOfFile is the name of a pipeline without one: its file's name
// without directory and extension, with characters other than letters,
// digits, '_', '-' and '.' replaced by '_' (it names the state directory,
// transactional ids and offset rows, so it must be one path element).
func nameOfFile(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if path == "" || base == "" || base == "." || base == ".." {
		return ""
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			return r
		}
		return '_'
	}, base)
}

// readPipeline reads the pipeline { ... } block.
func (c *checker) readPipeline() {
	u := c.main
	var first lang.Span
	c.prog.Pipeline = nameOfFile(u.name)
	params := []stdlib.Param{
		{Name: "name", Type: stdlib.String},
		{Name: "delivery", Type: stdlib.Enum(string(stdlib.ExactlyOnce), string(stdlib.AtLeastOnce), string(stdlib.AtMostOnce))},
		{Name: "checkpoint", Type: stdlib.Duration},
		{Name: "tasks", Type: stdlib.Int},
		{Name: "instances", Type: stdlib.Int},
		{Name: "http", Type: stdlib.String},
		{Name: "http_token", Type: stdlib.String},
		{Name: "http_tls_cert", Type: stdlib.String},
		{Name: "http_tls_key", Type: stdlib.String},
	}
	for _, it := range u.file.Items {
		p := it.Pipeline
		if p == nil {
			continue
		}
		span := u.nodeSpan(ast.SpanOf(p.Pos, p.EndPos))
		if first.IsValid() {
			d := c.errorf(lang.DuplicateName, span, "the file has two pipeline blocks")
			d.Related = []lang.Related{{Span: first, Message: "first defined here"}}
			continue
		}
		first = span
		c.prog.Span = span
		c.prog.Pipeline = p.Name
		vc := valCtx{u: u, noSecret: "the pipeline block"}
		seen := map[string]lang.Span{}
		for _, b := range p.Items {
			bspan := u.nodeSpan(ast.SpanOf(b.Pos, b.EndPos))
			if b.Member == nil || b.Member.Value == nil || len(b.Member.Path.Parts) != 1 {
				c.errorf(lang.MisplacedItem, bspan, "only name, delivery, checkpoint, tasks, instances and the http attributes may be set in the pipeline block")
				continue
			}
			m := b.Member
			name := m.Path.Parts[0]
			nspan := u.nodeSpan(ast.SpanOf(m.Path.Pos, m.Path.EndPos))
			pp := findParam(params, name)
			if pp == nil {
				d := c.errorf(lang.UnknownAttribute, nspan, "the pipeline block has no attribute %q", name)
				d.Detail = suggest(name, paramNames(params))
				continue
			}
			if prev, dup := seen[name]; dup {
				d := c.errorf(lang.DuplicateAttribute, nspan, "attribute %q is set twice", name)
				d.Related = []lang.Related{{Span: prev, Message: "first set here"}}
				continue
			}
			seen[name] = nspan
			pvc := vc
			if name == "http_token" {
				pvc.noSecret = "" // a token is only ever a secret reference
			}
			v, ok := c.convert(m.Value, pp.Type, name, pvc)
			if !ok {
				continue
			}
			vspan := valueSpan(u, m.Value)
			switch name {
			case "name":
				s, _ := v.(string)
				c.prog.Pipeline = s
			case "delivery":
				id, _ := v.(stdlib.Ident)
				c.prog.Delivery = stdlib.Delivery(id)
				c.pipelineDelivery = vspan
			case "checkpoint":
				d, _ := v.(time.Duration)
				if d <= 0 {
					c.errorf(lang.BadAttributeValue, vspan, "checkpoint must be positive")
					continue
				}
				c.prog.Checkpoint = d
			case "tasks":
				n, _ := v.(int64)
				if n < 1 {
					c.errorf(lang.BadAttributeValue, vspan, "tasks must be at least 1")
					continue
				}
				c.prog.Tasks = int(n)
			case "instances":
				n, _ := v.(int64)
				if n < 1 {
					c.errorf(lang.BadAttributeValue, vspan, "instances must be at least 1")
					continue
				}
				c.prog.Instances = int(n)
				c.instancesSpan = vspan
			case "http":
				c.prog.HTTP.Addr, _ = v.(string)
			case "http_token":
				sec, ok := v.(ir.Secret)
				if !ok {
					c.errorf(lang.BadAttributeValue, vspan, "http_token must be a ${env:NAME} or ${file:path} reference, not a token written in the file")
					continue
				}
				c.prog.HTTP.Token = string(sec)
			case "http_tls_cert":
				c.prog.HTTP.TLSCert, _ = v.(string)
			case "http_tls_key":
				c.prog.HTTP.TLSKey, _ = v.(string)
			}
		}
	}
}
