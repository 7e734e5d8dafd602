package exec

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// program is one compiled per-record expression of a stage. Programs are
// shared by the stage's tasks; each task evaluates with its own vm.VM.
type program struct {
	prog   *vm.Program
	meta   bool // the expression reads meta
	target string
	path   []string // target split at dots
	at     string   // file:line of the expression

	// Fast paths, decided from the compiled tree: a constant, a bare
	// field, or a field compared with a number.
	fast  fastKind
	konst any
	field string
	op    string
	num   float64
}

type fastKind int

const (
	slowPath fastKind = iota
	constPath
	fieldPath
	comparePath
)

// classify picks p's fast path, if any.
func (p *program) classify() {
	if p.meta {
		return
	}
	switch n := p.prog.Node().(type) {
	case *ast.StringNode:
		p.fast, p.konst = constPath, n.Value
	case *ast.IntegerNode:
		p.fast, p.konst = constPath, int64(n.Value)
	case *ast.FloatNode:
		p.fast, p.konst = constPath, n.Value
	case *ast.BoolNode:
		p.fast, p.konst = constPath, n.Value
	case *ast.IdentifierNode:
		p.fast, p.field = fieldPath, n.Value
	case *ast.BinaryNode:
		id, ok := n.Left.(*ast.IdentifierNode)
		if !ok {
			return
		}
		switch n.Operator {
		case "<", "<=", ">", ">=":
		default:
			return
		}
		switch r := n.Right.(type) {
		case *ast.IntegerNode:
			p.num = float64(r.Value)
		case *ast.FloatNode:
			p.num = r.Value
		default:
			return
		}
		p.fast, p.field, p.op = comparePath, id.Value, n.Operator
	}
}

// compare evaluates a comparePath program; ok is false when the field is
// not a number (the general path then decides).
func (p *program) compare(v any) (result, ok bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int64:
		f = float64(x)
	case int:
		f = float64(x)
	default:
		return false, false
	}
	switch p.op {
	case "<":
		return f < p.num, true
	case "<=":
		return f <= p.num, true
	case ">":
		return f > p.num, true
	}
	return f >= p.num, true
}

// test evaluates a boolean program (where, case).
func (p *program) test(m *vm.VM, r *stdlib.Record) (bool, error) {
	if p.fast == comparePath {
		if in, ok := r.Value.(map[string]any); ok {
			if res, ok := p.compare(in[p.field]); ok {
				return res, nil
			}
		}
	}
	v, err := p.eval(m, r)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition is %T, want bool", v)
	}
	return b, nil
}

// value evaluates p for a map stage whose input fields are in.
func (p *program) value(m *vm.VM, r *stdlib.Record, in map[string]any) (any, error) {
	switch p.fast {
	case constPath:
		return p.konst, nil
	case fieldPath:
		return in[p.field], nil
	case comparePath:
		if res, ok := p.compare(in[p.field]); ok {
			return res, nil
		}
	}
	return p.eval(m, r)
}

// compileExpr compiles e for evaluation against record maps.
func compileExpr(e *plan.Expr) (*program, error) {
	opts := []expr.Option{expr.AllowUndefinedVariables()}
	if e.Kind == plan.WhereExpr || e.Kind == plan.CaseExpr {
		opts = append(opts, expr.AsBool())
	}
	p, err := expr.Compile(e.Source, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: compiling %q: %w", atSpan(e.Span.File, e.Span.Start.Line), e.Source, err)
	}
	prog := &program{
		prog:   p,
		meta:   strings.Contains(e.Source, "meta"),
		target: e.Target,
		path:   splitPath(e.Target),
		at:     atSpan(e.Span.File, e.Span.Start.Line),
	}
	prog.classify()
	return prog, nil
}

// eval runs p against a record's value. A record value that is not a map is
// seen as {value: v}. When the expression reads meta, it sees a shallow
// copy of the record with meta added (the record itself may be shared with
// other stages' tasks and is never written to).
func (p *program) eval(m *vm.VM, r *stdlib.Record) (any, error) {
	env, ok := r.Value.(map[string]any)
	if !ok {
		env = map[string]any{"value": r.Value}
	}
	if p.meta {
		c := make(map[string]any, len(env)+1)
		for k, v := range env {
			c[k] = v
		}
		c["meta"] = metaOf(r)
		env = c
	}
	v, err := m.Run(p.prog, env)
	if i, ok := v.(int); ok {
		return int64(i), err
	}
	return v, err
}

// metaOf returns the meta value of a record: topic, partition, offset, key,
// timestamp, headers, source and source partition.
func metaOf(r *stdlib.Record) map[string]any {
	h := make(map[string]any, len(r.Headers))
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	var ts any
	if !r.Time.IsZero() {
		ts = r.Time
	}
	return map[string]any{
		"topic":            r.Topic,
		"partition":        int64(r.Partition),
		"offset":           r.Pos.Offset,
		"key":              r.Key,
		"timestamp":        ts,
		"headers":          h,
		"source":           r.Pos.Source,
		"source_partition": r.Pos.Partition,
	}
}
