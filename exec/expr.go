package exec

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/compiler/exprs"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/fn"
)

// program is one compiled per-record expression of a stage. Programs are
// shared by the stage's tasks; each task evaluates with its own vm.VM.
type program struct {
	prog   *exprs.Program
	src    string
	line   int // line of the expression's start
	col    int // column (in runes) of the expression's start
	file   string
	target string
	path   []string // target split at dots
	at     string   // file:line of the expression
	want   *types.Type
	params map[string]any // params.x, when the expression reads them

	// Fast paths, decided from the expression's tree: a constant, a bare
	// field, or a field compared with a number. Each falls back to the
	// program when the value is not of the expected kind, so results are
	// the program's.
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

// compileExpr compiles e of stage st for evaluation against record maps.
func compileExpr(st *plan.Stage, e *plan.Expr, now func() time.Time, params runParams) (*program, error) {
	at := atSpan(e.Span.File, e.Span.Start.Line)
	ctx := exprs.Context{Kind: e.Kind, Input: st.Input, Want: e.Type, Params: params.typ}
	p, err := exprs.Compile(e.Source, ctx, exprs.Options{Now: now})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	prog := &program{
		prog: p, src: e.Source, file: e.Span.File, line: e.Span.Start.Line, col: e.Span.Start.Column,
		target: e.Target, path: splitPath(e.Target), at: at, want: e.Type,
	}
	if p.UsesParams() {
		prog.params = params.values
	}
	if !p.UsesMeta() {
		prog.classify()
	}
	return prog, nil
}

// classify picks p's fast path, if any, from expr's parse of the source.
func (p *program) classify() {
	tree, err := expr.Compile(p.src, expr.AllowUndefinedVariables())
	if err != nil {
		return
	}
	switch n := tree.Node().(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		v, err := p.prog.Run(nil, map[string]any{})
		if err == nil {
			p.fast, p.konst = constPath, v
		}
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
// not a number (the program then decides).
func (p *program) compare(v any) (result, ok bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int64:
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

// plain reports whether a field value can be returned as it is: it is of
// the kind the expression was checked to produce.
func (p *program) plain(v any) bool {
	if p.want == nil || p.want.Kind == types.Any {
		return v != nil
	}
	switch v.(type) {
	case string:
		return p.want.Kind == types.String
	case int64:
		return p.want.Kind == types.Int
	case float64:
		return p.want.Kind == types.Float
	case bool:
		return p.want.Kind == types.Bool
	case time.Time:
		return p.want.Kind == types.Timestamp
	}
	return false
}

// test evaluates a boolean program (where, case).
func (p *program) test(m *vm.VM, r *stdlib.Record) (bool, error) {
	if p.fast == comparePath {
		switch in := r.Value.(type) {
		case map[string]any:
			if res, ok := p.compare(in[p.field]); ok {
				return res, nil
			}
		case *stdlib.Row:
			if v, ok := in.Get(p.field); ok {
				if res, ok := p.compare(v); ok {
					return res, nil
				}
			}
		}
	}
	v, err := p.eval(m, r)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition is %s, want bool", fn.TypeName(v))
	}
	return b, nil
}

// value evaluates p for a map stage whose input fields are in.
func (p *program) value(m *vm.VM, r *stdlib.Record, in map[string]any) (any, error) {
	switch p.fast {
	case constPath:
		return p.konst, nil
	case fieldPath:
		if v := in[p.field]; p.plain(v) {
			return v, nil
		}
	case comparePath:
		if res, ok := p.compare(in[p.field]); ok {
			return res, nil
		}
	}
	return p.eval(m, r)
}

// rowValue is value for a row by p's fast path alone: ok is false when
// the program must run.
func (p *program) rowValue(row *stdlib.Row) (any, bool) {
	switch p.fast {
	case constPath:
		return p.konst, true
	case fieldPath:
		if v, ok := row.Get(p.field); ok && p.plain(v) {
			return v, true
		}
	case comparePath:
		if v, ok := row.Get(p.field); ok {
			if res, ok := p.compare(v); ok {
				return res, true
			}
		}
	}
	return nil, false
}

// eval runs p against a record's value. A record value that is not a map is
// seen as {value: v}, a Row as its map. When the expression reads meta or
// params, it sees a shallow copy of the record with them added (the record
// itself may be shared with other stages' tasks and is never written to).
func (p *program) eval(m *vm.VM, r *stdlib.Record) (any, error) {
	env, ok := r.Value.(map[string]any)
	if !ok {
		if row, isRow := r.Value.(*stdlib.Row); isRow {
			env = row.Map()
		} else {
			env = map[string]any{"value": r.Value}
		}
	}
	if p.prog.UsesMeta() || p.params != nil {
		c := make(map[string]any, len(env)+2)
		for k, v := range env {
			c[k] = v
		}
		if p.prog.UsesMeta() {
			c["meta"] = stdlib.Meta(r)
		}
		if p.params != nil {
			c["params"] = p.params
		}
		env = c
	}
	v, err := p.prog.Run(m, env)
	if err != nil {
		return nil, p.runError(err)
	}
	return v, nil
}

// runError places an evaluation error: at file:line:col of the part of
// the expression that failed, when the error says which.
func (p *program) runError(err error) error {
	if re, ok := err.(*exprs.RunError); ok && re.End > re.Start && re.Start <= len(p.src) {
		before := p.src[:re.Start]
		line, col := p.line+strings.Count(before, "\n"), p.col+utf8.RuneCountInString(before)
		if i := strings.LastIndexByte(before, '\n'); i >= 0 {
			col = 1 + utf8.RuneCountInString(before[i+1:])
		}
		at := atSpan(p.file, line)
		if p.col > 0 {
			at = fmt.Sprintf("%s:%d", at, col)
		}
		return &exprError{at: at, err: err}
	}
	return err
}

// exprError is an evaluation error at a known file:line.
type exprError struct {
	at  string
	err error
}

func (e *exprError) Error() string { return e.err.Error() }
func (e *exprError) Unwrap() error { return e.err }

// errAt returns where err happened: its own position when it has one,
// else def.
func errAt(err error, def string) string {
	if e, ok := err.(*exprError); ok {
		return e.at
	}
	return def
}
