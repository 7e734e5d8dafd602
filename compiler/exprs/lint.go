package exprs

import (
	"fmt"

	"github.com/expr-lang/expr/ast"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
)

// optionalIssues finds optional fields used where a null fails at run time
// (PIPE450): operands of comparisons, arithmetic, logic and string
// operators, function arguments, member and index bases, conditions. A use
// is fine as the left of ??, under ?., compared with nil, as a list or map
// element, as a whole := result, or where a nil check guards it
// (x != nil && ..., x == nil || ..., x != nil ? ... : ...).
func optionalIssues(src string, root ast.Node, ctx Context, env *typedEnv) []Issue {
	l := &optLint{src: src, seen: map[string]bool{}}
	safe := ctx.Kind == plan.AssignExpr || ctx.Kind == plan.AttrExpr
	l.visit(root, safe, nil)
	return l.issues
}

type optLint struct {
	src    string
	issues []Issue
	seen   map[string]bool // paths already reported
}

// path returns the dotted field path of an identifier or member chain, or "".
func path(n ast.Node) string {
	switch x := n.(type) {
	case *ast.IdentifierNode:
		return x.Value
	case *ast.MemberNode:
		base := path(x.Node)
		s, ok := x.Property.(*ast.StringNode)
		if base == "" || !ok {
			return ""
		}
		return base + "." + s.Value
	case *ast.ChainNode:
		return path(x.Node)
	}
	return ""
}

// nilChecked returns the paths that n proves non-nil when n is true (want
// "!=") or when n is false (want "==").
func nilChecked(n ast.Node, op, join string) []string {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	if b.Operator == join || (join == "&&" && b.Operator == "and") || (join == "||" && b.Operator == "or") {
		return append(nilChecked(b.Left, op, join), nilChecked(b.Right, op, join)...)
	}
	if b.Operator != op {
		return nil
	}
	if _, isNil := b.Right.(*ast.NilNode); isNil {
		if p := path(b.Left); p != "" {
			return []string{p}
		}
	}
	if _, isNil := b.Left.(*ast.NilNode); isNil {
		if p := path(b.Right); p != "" {
			return []string{p}
		}
	}
	return nil
}

func with(guards []string, more []string) []string {
	if len(more) == 0 {
		return guards
	}
	out := make([]string, 0, len(guards)+len(more))
	out = append(out, guards...)
	return append(out, more...)
}

func (l *optLint) guarded(n ast.Node, guards []string) bool {
	p := path(n)
	if p == "" {
		return false
	}
	for _, g := range guards {
		if g == p {
			return true
		}
	}
	return false
}

func (l *optLint) report(n ast.Node) {
	p := path(n)
	if p == "" || l.seen[p] {
		return
	}
	l.seen[p] = true
	loc := n.Location()
	start, end := byteSpan(l.src, loc.From, loc.To)
	l.issues = append(l.issues, Issue{Start: start, End: end, Code: lang.OptionalUnchecked, Severity: lang.Warning,
		Message: fmt.Sprintf("optional field %q used without a nil check", p),
		Detail:  fmt.Sprintf("a null %s fails here at run time; use %s ?? default, ?. or check %s != nil", p, p, p)})
}

// visit walks n; safe says whether a null value of n itself is fine where
// it stands.
func (l *optLint) visit(n ast.Node, safe bool, guards []string) {
	if n == nil {
		return
	}
	switch x := n.(type) {
	case *ast.IdentifierNode:
		if !safe && isOptionalNode(x) && !l.guarded(x, guards) {
			l.report(x)
		}
	case *ast.MemberNode:
		if !safe && isOptionalNode(x) && !l.guarded(x, guards) {
			l.report(x)
		}
		// The base must not be null unless the access is ?.
		l.visit(x.Node, x.Optional, guards)
		if _, isStr := x.Property.(*ast.StringNode); !isStr {
			l.visit(x.Property, false, guards)
		}
	case *ast.ChainNode:
		l.visit(x.Node, safe, guards)
	case *ast.BinaryNode:
		switch x.Operator {
		case "??":
			l.visit(x.Left, true, guards)
			l.visit(x.Right, safe, guards)
		case "==", "!=":
			// Only a comparison with nil is a nil check; comparing an
			// optional with a value is linted like any other use.
			_, lnil := x.Left.(*ast.NilNode)
			_, rnil := x.Right.(*ast.NilNode)
			l.visit(x.Left, rnil, guards)
			l.visit(x.Right, lnil, guards)
		case "&&", "and":
			l.visit(x.Left, false, guards)
			l.visit(x.Right, false, with(guards, nilChecked(x.Left, "!=", "&&")))
		case "||", "or":
			l.visit(x.Left, false, guards)
			l.visit(x.Right, false, with(guards, nilChecked(x.Left, "==", "||")))
		default:
			l.visit(x.Left, false, guards)
			l.visit(x.Right, false, guards)
		}
	case *ast.ConditionalNode:
		l.visit(x.Cond, false, guards)
		l.visit(x.Exp1, safe, with(guards, nilChecked(x.Cond, "!=", "&&")))
		l.visit(x.Exp2, safe, with(guards, nilChecked(x.Cond, "==", "||")))
	case *ast.UnaryNode:
		l.visit(x.Node, false, guards)
	case *ast.CallNode:
		argSafe := false
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && id.Value == "coalesce" {
			argSafe = true
		}
		if _, isIdent := x.Callee.(*ast.IdentifierNode); !isIdent {
			l.visit(x.Callee, false, guards)
		}
		for _, a := range x.Arguments {
			l.visit(a, argSafe, guards)
		}
	case *ast.BuiltinNode:
		for _, a := range x.Arguments {
			l.visit(a, false, guards)
		}
	case *ast.PredicateNode:
		l.visit(x.Node, false, guards)
	case *ast.SliceNode:
		l.visit(x.Node, false, guards)
		l.visit(x.From, false, guards)
		l.visit(x.To, false, guards)
	case *ast.ArrayNode:
		for _, e := range x.Nodes {
			l.visit(e, true, guards)
		}
	case *ast.MapNode:
		for _, p := range x.Pairs {
			l.visit(p, true, guards)
		}
	case *ast.PairNode:
		l.visit(x.Key, false, guards)
		l.visit(x.Value, true, guards)
	case *ast.VariableDeclaratorNode:
		l.visit(x.Value, true, guards)
		l.visit(x.Expr, safe, guards)
	case *ast.SequenceNode:
		for i, e := range x.Nodes {
			l.visit(e, safe && i == len(x.Nodes)-1, guards)
		}
	}
}
