package exprs

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"pipe.dev/pipe/lang"
)

// nullIssues finds values that may be null used where null fails
// (PIPE116): an operand of arithmetic, of an ordering comparison or of a
// logical operator, a function argument, the base of a field access or an
// index, a condition. == and !=, in, contains, startsWith, endsWith,
// matches and ?? accept null, as do list and map elements and a whole :=
// result. A value is narrowed to its non-null type where a check proves it
// (see [NonNull]): on the right of x != nil && … and x == nil || …, in the
// branch of x != nil ? … : … that the check selects.
func nullIssues(src string, root ast.Node, env *typedEnv) []Issue {
	c := &nullCheck{src: src, env: env, lets: map[string]bool{}}
	c.value(root, nil)
	return c.issues
}

type nullCheck struct {
	src    string
	env    *typedEnv
	issues []Issue
	lets   map[string]bool // let variables in scope: whether they may be null
}

// nullAccepting lists the functions that take null arguments: coalesce
// and merge skip them, toJSON writes null, type names it, get reads
// nothing from it.
var nullAccepting = map[string]bool{"coalesce": true, "merge": true, "toJSON": true, "type": true, "get": true}

// need checks n where null fails: what names the use, for the message.
func (c *nullCheck) need(n ast.Node, guards []string, what string) {
	if n == nil || !c.value(n, guards) {
		return
	}
	start, end := nodeSpan(c.src, n)
	text := strings.TrimSpace(c.src[start:end])
	t := c.env.pipeType(n.Type())
	msg := fmt.Sprintf("%s may be null, and %s fails on null", text, what)
	if t.Optional {
		msg = fmt.Sprintf("%s is %s and may be null, and %s fails on null", text, t, what)
	}
	if p := path(n); p != "" {
		text = p
	} else {
		text = "(" + text + ")"
	}
	c.issues = append(c.issues, Issue{Start: start, End: end, Code: lang.NullableValue, Severity: lang.Error,
		Message: msg,
		Detail:  fmt.Sprintf("check it first (%s != nil && …), give a default (%s ?? …), or let a filter or route case take the nulls", text, text)})
}

// value checks n and reports whether its value may be null.
func (c *nullCheck) value(n ast.Node, guards []string) bool {
	switch x := n.(type) {
	case nil:
		return false
	case *ast.NilNode:
		return true
	case *ast.ConstantNode:
		return x.Value == nil
	case *ast.IdentifierNode:
		if opt, ok := c.lets[x.Value]; ok {
			return opt && !slices.Contains(guards, x.Value)
		}
		return c.nullable(x, guards)
	case *ast.PointerNode:
		return isOptionalNode(x)
	case *ast.MemberNode:
		baseNull := false
		if x.Optional {
			baseNull = c.value(x.Node, guards)
		} else {
			c.need(x.Node, guards, "reading a field or an element")
		}
		if _, isName := x.Property.(*ast.StringNode); !isName {
			c.need(x.Property, guards, "an index")
		}
		if slices.Contains(guards, path(x)) {
			return false
		}
		return baseNull || isOptionalNode(x)
	case *ast.ChainNode:
		if slices.Contains(guards, path(x)) {
			c.value(x.Node, guards)
			return false
		}
		return c.value(x.Node, guards) || isOptionalNode(x)
	case *ast.UnaryNode:
		c.need(x.Node, guards, "operator "+x.Operator)
		return false
	case *ast.BinaryNode:
		switch x.Operator {
		case "??":
			c.value(x.Left, guards)
			return c.value(x.Right, guards)
		case "==", "!=", "in", "contains", "startsWith", "endsWith", "matches":
			c.value(x.Left, guards)
			c.value(x.Right, guards)
		case "&&", "and":
			c.need(x.Left, guards, "operator "+x.Operator)
			c.need(x.Right, with(guards, proven(x.Left, true)), "operator "+x.Operator)
		case "||", "or":
			c.need(x.Left, guards, "operator "+x.Operator)
			c.need(x.Right, with(guards, proven(x.Left, false)), "operator "+x.Operator)
		default:
			c.need(x.Left, guards, "operator "+x.Operator)
			c.need(x.Right, guards, "operator "+x.Operator)
		}
		return false
	case *ast.ConditionalNode:
		c.need(x.Cond, guards, "a condition")
		a := c.value(x.Exp1, with(guards, proven(x.Cond, true)))
		b := c.value(x.Exp2, with(guards, proven(x.Cond, false)))
		return a || b
	case *ast.CallNode:
		name := ""
		if id, ok := x.Callee.(*ast.IdentifierNode); ok {
			name = id.Value
		} else {
			c.need(x.Callee, guards, "a call")
		}
		all := len(x.Arguments) > 0
		for _, a := range x.Arguments {
			if nullAccepting[name] {
				all = c.value(a, guards) && all
			} else {
				c.need(a, guards, name+"()")
			}
		}
		if name == "coalesce" {
			return all
		}
		return isOptionalNode(x)
	case *ast.BuiltinNode:
		for i, a := range x.Arguments {
			switch {
			case nullAccepting[x.Name]:
				c.value(a, guards)
			case i > 0 && isPredicate(a):
				c.value(a, nil)
			default:
				c.need(a, guards, x.Name+"()")
			}
		}
		return isOptionalNode(x) || x.Name == "get"
	case *ast.PredicateNode:
		c.value(x.Node, guards)
		return false
	case *ast.SliceNode:
		c.need(x.Node, guards, "a slice")
		c.need(x.From, guards, "a slice bound")
		c.need(x.To, guards, "a slice bound")
		return false
	case *ast.ArrayNode:
		for _, e := range x.Nodes {
			c.value(e, guards)
		}
		return false
	case *ast.MapNode:
		for _, p := range x.Pairs {
			c.value(p, guards)
		}
		return false
	case *ast.PairNode:
		c.need(x.Key, guards, "a map key")
		c.value(x.Value, guards)
		return false
	case *ast.VariableDeclaratorNode:
		opt := c.value(x.Value, guards)
		prev, had := c.lets[x.Name]
		c.lets[x.Name] = opt
		r := c.value(x.Expr, guards)
		if had {
			c.lets[x.Name] = prev
		} else {
			delete(c.lets, x.Name)
		}
		return r
	case *ast.SequenceNode:
		r := false
		for _, e := range x.Nodes {
			r = c.value(e, guards)
		}
		return r
	}
	return false
}

// nullable reports whether a field read may be null: its type is
// optional and no check narrows it.
func (c *nullCheck) nullable(n ast.Node, guards []string) bool {
	return isOptionalNode(n) && !slices.Contains(guards, path(n))
}

func isPredicate(n ast.Node) bool {
	_, ok := n.(*ast.PredicateNode)
	return ok
}

// isOptionalNode reports whether a checked node has an optional type.
func isOptionalNode(n ast.Node) bool {
	t := n.Type()
	return t != nil && t.Kind() == reflect.Pointer
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

func with(guards []string, more []string) []string {
	if len(more) == 0 {
		return guards
	}
	out := make([]string, 0, len(guards)+len(more))
	out = append(out, guards...)
	return append(out, more...)
}

// NonNull returns the field paths that src, a bool expression, proves are
// not null when it is true (when) or false (!when): x != nil, x == nil
// negated, x == "a" (a literal that is not null), x in [a list without
// null], joined by && (true) or || (false) and negated by ! or not. A
// nested path proves its parents too (a?.b != nil: a is not null).
func NonNull(src string, when bool) []string {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	return proven(tree.Node, when)
}

func proven(n ast.Node, when bool) []string {
	var out []string
	add := func(p string) {
		for p != "" {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
			i := strings.LastIndexByte(p, '.')
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	switch x := n.(type) {
	case *ast.UnaryNode:
		if x.Operator == "!" || x.Operator == "not" {
			return proven(x.Node, !when)
		}
	case *ast.CallNode:
		// assert(c, "...") is true only where c is.
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && id.Value == "assert" && len(x.Arguments) == 2 && when {
			return proven(x.Arguments[0], true)
		}
	case *ast.BinaryNode:
		switch x.Operator {
		case "&&", "and":
			if when {
				return append(proven(x.Left, true), proven(x.Right, true)...)
			}
		case "||", "or":
			switch {
			case !when:
				return append(proven(x.Left, false), proven(x.Right, false)...)
			case isFail(x.Right): // a || fail("..."): a holds, or the record failed
				return proven(x.Left, true)
			case isFail(x.Left):
				return proven(x.Right, true)
			}
		case "!=", "==":
			eq := x.Operator == "=="
			for _, side := range [][2]ast.Node{{x.Left, x.Right}, {x.Right, x.Left}} {
				p, other := path(side[0]), side[1]
				if p == "" {
					continue
				}
				_, isNil := other.(*ast.NilNode)
				switch {
				case isNil && eq != when: // x != nil true, x == nil false
					add(p)
				case !isNil && eq && when && isLiteral(other):
					add(p)
				}
			}
		case "in":
			if p := path(x.Left); p != "" && when && nullFreeList(x.Right) {
				add(p)
			}
		}
	}
	return out
}

// isFail reports whether n is a call of fail, which never returns.
func isFail(n ast.Node) bool {
	c, ok := n.(*ast.CallNode)
	if !ok {
		return false
	}
	id, ok := c.Callee.(*ast.IdentifierNode)
	return ok && id.Value == "fail"
}

// isLiteral reports whether n is a literal that is not null.
func isLiteral(n ast.Node) bool {
	switch x := n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return true
	case *ast.ConstantNode:
		return x.Value != nil
	case *ast.UnaryNode:
		return x.Operator == "-" && isLiteral(x.Node)
	}
	return false
}

// nullFreeList reports whether n is a list literal without null (or the
// constant an optimizer made of one).
func nullFreeList(n ast.Node) bool {
	switch x := n.(type) {
	case *ast.ArrayNode:
		for _, e := range x.Nodes {
			if !isLiteral(e) {
				return false
			}
		}
		return true
	case *ast.ConstantNode:
		v := reflect.ValueOf(x.Value)
		switch v.Kind() {
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len(); i++ {
				if e := v.Index(i); e.Kind() == reflect.Interface && e.IsNil() {
					return false
				}
			}
			return true
		case reflect.Map:
			for _, k := range v.MapKeys() {
				if k.Kind() == reflect.Interface && k.IsNil() {
					return false
				}
			}
			return true
		}
	}
	return false
}

// nodeSpan returns the byte span of n in src: from its first to its last
// descendant, with a call's closing parenthesis.
func nodeSpan(src string, n ast.Node) (int, int) {
	from, to := n.Location().From, n.Location().To
	ast.Walk(&n, visitFunc(func(d *ast.Node) {
		loc := (*d).Location()
		from, to = min(from, loc.From), max(to, loc.To)
	}))
	start, end := byteSpan(src, from, to)
	start, end = balanced(src, start, end)
	switch x := n.(type) {
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && id.Value != fetchName {
			end = closingParen(src, start, start+len(id.Value), end)
		}
	case *ast.BuiltinNode:
		end = closingParen(src, start, start+len(x.Name), end)
	case *ast.MemberNode:
		if _, name := x.Property.(*ast.StringNode); !name {
			// An index: its closing bracket too.
			if i := len(src) - len(strings.TrimLeft(src[end:], " \t\n\"'")); i < len(src) && src[i] == ']' {
				end = i + 1
			}
		}
	}
	return start, end
}

// balanced widens src[start:end] over the parentheses it opens or closes
// without their partner ((a + b) * c spans from a: its "(" is taken in).
func balanced(src string, start, end int) (int, int) {
	depth, low := 0, 0
	for i := start; i < end; i++ {
		switch src[i] {
		case '"', '\'', '`':
			i = StringEnd(src, i)
		case '(':
			depth++
		case ')':
			depth--
			low = min(low, depth)
		}
	}
	for ; low < 0 && start > 0; start-- {
		if c := src[start-1]; c == '(' {
			low++
			depth++
		} else if c != ' ' && c != '\t' && c != '\n' {
			break
		}
	}
	for ; depth > 0 && end < len(src); end++ {
		if c := src[end]; c == ')' {
			depth--
		} else if c != ' ' && c != '\t' && c != '\n' {
			break
		}
	}
	return start, end
}

// closingParen returns the offset after the parenthesis that closes the
// call whose name is src[start:name], when it lies at or after end.
func closingParen(src string, start, name, end int) int {
	if name > len(src) || !strings.HasPrefix(strings.TrimLeft(src[name:], " \t\n"), "(") {
		return end
	}
	depth := 0
	for i := start; i < len(src); i++ {
		switch src[i] {
		case '"', '\'', '`':
			i = StringEnd(src, i)
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				return max(i+1, end)
			}
		}
	}
	return end
}

// StringEnd returns the offset of the quote that closes the string literal
// opening at src[i] (", ' or `; only a back-quoted one has no escapes), or
// len(src) when it is not closed.
func StringEnd(src string, i int) int {
	q := src[i]
	for i++; i < len(src) && src[i] != q; i++ {
		if src[i] == '\\' && q != '`' {
			i++
		}
	}
	return min(i, len(src))
}
