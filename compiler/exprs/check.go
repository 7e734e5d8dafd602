package exprs

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/checker/nature"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/fn"
)

// Check type-checks src in ctx. It returns the inferred result and the
// issues found: errors (PIPE001, PIPE104 to PIPE107, PIPE113 to PIPE116,
// PIPE308). Offsets are byte offsets into
// src. Lints that need the stage's context are left to the caller, which
// reads them from the result: PIPE420 from Const, PIPE453 from UsesNow and
// PIPE451 (an unannotated := of type any) from Type.
//
// Check builds the typed environment afresh; a caller checking many
// expressions uses a [Checker], which reuses it.
func Check(src string, ctx Context) (res Result, issues []Issue) {
	var c Checker
	return c.Check(src, ctx)
}

// Checker type-checks expressions as [Check] does, building the typed
// environment and expr's configuration once per distinct context (input
// and params types compared by structure, predicate or not) and reusing
// them for every expression checked in that context. Its zero value is
// ready to use. A Checker is not safe for concurrent use: one compilation
// owns one.
type Checker struct {
	envs    map[string]*checkEnv
	structs map[string]reflect.Type // environment structs by shape
	key     []byte
}

// checkEnv is what a Checker keeps for one context.
type checkEnv struct {
	env *typedEnv
	cfg *conf.Config
}

// Check is [Check], reusing what c built for an equal context before.
func (c *Checker) Check(src string, ctx Context) (res Result, issues []Issue) {
	res.Type = types.AnyType
	defer func() {
		if r := recover(); r != nil {
			s, e := trimmedSpan(src)
			issues = append(issues, Issue{Start: s, End: e, Code: lang.Internal, Severity: lang.Error,
				Message: fmt.Sprintf("internal error checking expression: %v", r)})
		}
	}()
	if strings.TrimSpace(src) == "" {
		return res, []Issue{{Start: 0, End: len(src), Code: lang.SyntaxError, Severity: lang.Error,
			Message: "empty expression"}}
	}
	if is := references(src); len(is) > 0 {
		return res, is
	}
	keyIssues := secretIssues(src, ctx.Params)
	if slices.ContainsFunc(keyIssues, func(is Issue) bool { return is.Severity == lang.Error }) {
		return res, keyIssues
	}
	predicate := ctx.Kind == plan.WhereExpr || ctx.Kind == plan.CaseExpr
	ce := c.envFor(ctx, predicate)
	env := ce.env
	var nulls []Issue
	tree, issues, err := checkTree(src, ce.cfg, func(root ast.Node) {
		if ctx.Input != nil {
			nulls = nullIssues(src, root, env)
			res.CannotFail = cannotFail(root)
		}
	})
	if err != nil {
		issues := issuesOf(src, err, env, ctx)
		for i, is := range issues {
			if msg, ok := callMismatch(src, is, ce.cfg, env); ok && is.Code == lang.ExprTypeError {
				issues[i].Message = msg
			}
		}
		return res, issues
	}
	root := tree.Node
	if ctx.Input == nil {
		// Unknown names are allowed without a schema, unknown functions not.
		if is := unknownCalls(src); len(is) > 0 {
			return res, is
		}
	}
	t := env.inferType(root)
	res.Type = t
	if call := nowCall(root, env); call != nil {
		res.UsesNow = true
		res.NowStart, res.NowEnd = nodeSpan(src, call)
	}

	if predicate {
		if t.Kind != types.Any && (t.Kind != types.Bool || t.Optional) {
			s, e := trimmedSpan(src)
			issues = append(issues, Issue{Start: s, End: e, Code: lang.NotBool, Severity: lang.Error,
				Message: fmt.Sprintf("%s must be bool, got %s", predicateName(ctx.Kind), t)})
		}
		if v, ok := constantBool(tree, ce.cfg, env); ok {
			res.Const = &v
		}
	}
	if ctx.Want != nil {
		if err := types.AssignableTo(t, ctx.Want); err != nil {
			s, e := trimmedSpan(src)
			issues = append(issues, Issue{Start: s, End: e, Code: lang.AnnotationMismatch, Severity: lang.Error,
				Message: fmt.Sprintf("expression of type %s does not match annotation %s", t, ctx.Want),
				Detail:  err.Error()})
		}
		if t.Kind == types.Any {
			res.Type = ctx.Want
		}
	}
	issues = append(issues, nulls...)
	issues = append(issues, keyIssues...)
	if env.hasMeta {
		issues = append(issues, undeclaredMeta(src, root, ctx.Meta)...)
	}
	return res, issues
}

// references reports each ${env:…}, ${file:…} or ${param:…} written
// inside a string literal of src (PIPE308): an expression string is text,
// never resolved, so the reference would silently be the literal text.
func references(src string) []Issue {
	var out []Issue
	for i := 0; i < len(src); i++ {
		q := src[i]
		if q != '"' && q != '\'' && q != '`' {
			continue
		}
		close := StringEnd(src, i)
		for j := i + 1; j < close; j++ {
			if !strings.HasPrefix(src[j:close], "${") {
				continue
			}
			end := strings.IndexByte(src[j:close], '}')
			if end < 0 {
				continue
			}
			ref := src[j : j+end+1]
			provider, name, ok := strings.Cut(ref[2:len(ref)-1], ":")
			if !ok || provider != "env" && provider != "file" && provider != "param" {
				continue
			}
			is := Issue{Start: j, End: j + end + 1, Code: lang.SecretNotAllowed, Severity: lang.Error,
				Message: fmt.Sprintf("%s in an expression is the literal text, not its value", ref)}
			if provider == "param" {
				is.Detail = fmt.Sprintf("read the def parameter as params.%s", name)
			} else {
				is.Detail = fmt.Sprintf("declare a parameter at the top of the file, param %s: secret = %q (or another type), and use params.%s", paramName(name), ref, paramName(name))
			}
			out = append(out, is)
			j += end
		}
		i = close
	}
	return out
}

// secretIssues reports each read of a secret parameter (params of type
// secret) that is not the key argument of an hmac function or the argument
// of reveal (PIPE117), and each string literal given as a key (the lint
// PIPE460: a credential in the file).
func secretIssues(src string, params *types.Type) []Issue {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	root := tree.Node
	keys := map[ast.Node]bool{} // nodes in a key position
	var out []Issue
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		c, ok := (*n).(*ast.CallNode)
		if !ok || len(c.Arguments) == 0 {
			return
		}
		id, ok := c.Callee.(*ast.IdentifierNode)
		if !ok || !slices.Contains(fn.KeyFuncs, id.Value) && id.Value != "reveal" {
			return
		}
		keys[c.Arguments[0]] = true
		if lit, ok := c.Arguments[0].(*ast.StringNode); ok && id.Value != "reveal" {
			start, end := nodeSpan(src, lit)
			out = append(out, Issue{Start: start, End: end, Code: lang.HardcodedSecret, Severity: lang.Warning,
				Message: fmt.Sprintf("the key of %s is written in the file", id.Value),
				Detail:  fmt.Sprintf(`declare it as a secret parameter, param key: secret = "${env:KEY}", and write %s(params.key, ...)`, id.Value)})
		}
	}))
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		m, ok := (*n).(*ast.MemberNode)
		if !ok || keys[*n] {
			return
		}
		base, isIdent := m.Node.(*ast.IdentifierNode)
		name, isName := m.Property.(*ast.StringNode)
		if !isIdent || base.Value != "params" || !isName {
			return
		}
		if f := params.Field(name.Value); f == nil || f.Type.Kind != types.Secret {
			return
		}
		start, end := nodeSpan(src, m)
		out = append(out, Issue{Start: start, End: end, Code: lang.SecretExposed, Severity: lang.Error,
			Message: fmt.Sprintf("secret params.%s may only be the key of %s", name.Value, strings.Join(fn.KeyFuncs, ", ")),
			Detail:  fmt.Sprintf("it must not reach a record, a log or a decision; reveal(params.%s) lets its value into the record on purpose", name.Value)})
	}))
	return out
}

// paramName suggests a parameter name for the key of a reference
// (KAFKA_KEY -> kafka_key, /run/x.properties:hmac -> hmac).
func paramName(key string) string {
	if i := strings.LastIndexByte(key, ':'); i >= 0 {
		key = key[i+1:]
	}
	b := []byte(strings.ToLower(key))
	for i, c := range b {
		if !isIdentByte(c) || c == '$' {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		b = append([]byte("p_"), b...)
	}
	return string(b)
}

// undeclaredMeta reports each read of a metadata field that meta does not
// have (PIPE115), at the whole meta.x. A name that is no metadata field at
// all is left to the type checker (PIPE104).
func undeclaredMeta(src string, root ast.Node, meta *types.Type) []Issue {
	if meta == nil {
		return nil
	}
	var out []Issue
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		m, ok := (*n).(*ast.MemberNode)
		if !ok {
			return
		}
		id, isIdent := m.Node.(*ast.IdentifierNode)
		name, isName := m.Property.(*ast.StringNode)
		if !isIdent || id.Value != "meta" || !isName || meta.Field(name.Value) != nil || metaType.Field(name.Value) == nil {
			return
		}
		from, to := m.Location().From, m.Location().To
		for _, c := range []ast.Node{m.Node, m.Property} {
			from, to = min(from, c.Location().From), max(to, c.Location().To)
		}
		start, end := byteSpan(src, from, to)
		if i := len(src) - len(strings.TrimLeft(src[end:], " \t\n")); strings.Contains(src[start:end], "[") && i < len(src) && src[i] == ']' {
			end = i + 1 // meta["x"]: the closing bracket too
		}
		out = append(out, Issue{Start: start, End: end, Code: lang.UndeclaredMeta, Severity: lang.Error,
			Message: fmt.Sprintf("meta.%s is not set by every source the records come from", name.Value)})
	}))
	return out
}

// checkFuncs is the function library as Check installs it, built once:
// checking never depends on the clock, and the options are read-only.
var checkFuncs = sync.OnceValue(func() []expr.Option { return fn.Options(nil) })

// baseConfig is expr's configuration with the builtins and the function
// library installed and no environment, built once. Its maps are only
// read after it is built; each context gets a shallow copy.
var baseConfig = sync.OnceValue(func() *conf.Config {
	cfg := conf.CreateNew()
	for _, op := range checkFuncs() {
		op(cfg)
	}
	for name := range cfg.Disabled {
		delete(cfg.Builtins, name)
	}
	return cfg
})

// envFor returns the environment and configuration for ctx, building them
// on first use. The configuration is what expr.Compile would build from
// expr.Env, expr.AllowUndefinedVariables (untyped input), expr.AsBool
// (predicates) and the function library.
func (c *Checker) envFor(ctx Context, predicate bool) *checkEnv {
	c.key = c.key[:0]
	if predicate {
		c.key = append(c.key, 'P')
	}
	c.key = typeKey(c.key, ctx.Input, true)
	c.key = append(c.key, '|')
	c.key = typeKey(c.key, ctx.Params, true)
	if ce, ok := c.envs[string(c.key)]; ok {
		return ce
	}
	if c.structs == nil {
		c.structs = map[string]reflect.Type{}
	}
	env := newTypedEnv(ctx, c.structs)
	cfg := new(conf.Config)
	*cfg = *baseConfig()
	cfg.NtCache = nature.Cache{}
	cfg.WithEnv(env.zero())
	if ctx.Input == nil {
		cfg.Strict = false
	}
	if predicate {
		cfg.Expect, cfg.ExpectAny = reflect.Bool, true
	}
	cfg.Check()
	ce := &checkEnv{env: env, cfg: cfg}
	if c.envs == nil {
		c.envs = map[string]*checkEnv{}
	}
	c.envs[string(c.key)] = ce
	return ce
}

// typeKey appends a canonical form of t to b: two types have the same key
// exactly when they have the same structure and optionality, and, when
// named is set, the same type names.
func typeKey(b []byte, t *types.Type, named bool) []byte {
	if t == nil {
		return append(b, '-')
	}
	b = append(b, t.Kind...)
	if t.Optional {
		b = append(b, '?')
	}
	if named && t.Name != "" {
		b = append(b, '=')
		b = append(b, t.Name...)
	}
	switch t.Kind {
	case types.List, types.Map:
		b = append(b, '<')
		b = typeKey(b, t.Elem, named)
		b = append(b, '>')
	case types.Record:
		b = append(b, '{')
		for _, f := range t.Fields {
			b = append(b, f.Name...)
			b = append(b, ':')
			b = typeKey(b, f.Type, named)
			b = append(b, ',')
		}
		b = append(b, '}')
	}
	return b
}

// checkTree is the checking half of expr.Compile with a prepared
// configuration: parse, type-check and optimise, leaving out the bytecode,
// which only a constant predicate needs (see constantBool). checked sees
// the checked tree before optimisation, whose folding changes its shape
// (b && true becomes b). Divisions by a constant zero (PIPE114) are
// returned as issues and leave the tree unoptimised: folding would hide
// them. A panic becomes an error.
func checkTree(src string, cfg *conf.Config, checked func(ast.Node)) (tree *parser.Tree, issues []Issue, err error) {
	defer func() {
		if r := recover(); r != nil {
			tree, issues, err = nil, nil, fmt.Errorf("%v", r)
		}
	}()
	tree, err = checker.ParseCheck(src, cfg)
	if err != nil {
		return nil, nil, err
	}
	checked(tree.Node)
	if issues = zeroDivisors(src, tree.Node); len(issues) > 0 {
		return tree, issues, nil
	}
	if cfg.Optimize {
		if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
			var fe *file.Error
			if errors.As(err, &fe) {
				return nil, nil, fe.Bind(tree.Source)
			}
			return nil, nil, err
		}
	}
	return tree, nil, nil
}

// zeroDivisors reports the divisions and remainders whose divisor is a
// constant zero (0, 0.0, -0, 2 - 2): a division gives an infinity or NaN,
// which JSON and CSV cannot hold, and a remainder fails. A division by a
// field is left alone.
func zeroDivisors(src string, root ast.Node) []Issue {
	var out []Issue
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		b, ok := (*n).(*ast.BinaryNode)
		if !ok || b.Operator != "/" && b.Operator != "%" {
			return
		}
		if v, ok := constNumber(b.Right); !ok || v != 0 {
			return
		}
		// The divisor's span runs from its first to its last node.
		from, to := b.Right.Location().From, b.Right.Location().To
		ast.Walk(&b.Right, visitFunc(func(n *ast.Node) {
			loc := (*n).Location()
			from, to = min(from, loc.From), max(to, loc.To)
		}))
		start, end := byteSpan(src, from, to)
		is := Issue{Start: start, End: end, Code: lang.DivisionByZero, Severity: lang.Error,
			Message: "division by zero",
			Detail:  "it gives +Inf, -Inf or NaN, which JSON and CSV cannot hold"}
		if b.Operator == "%" {
			is.Message, is.Detail = "remainder of a division by zero", "it fails for every record"
		}
		out = append(out, is)
	}))
	return out
}

// constNumber returns the value of a number literal, or of signs and
// +, -, * over number literals.
func constNumber(n ast.Node) (float64, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		return float64(x.Value), true
	case *ast.FloatNode:
		return x.Value, true
	case *ast.UnaryNode:
		v, ok := constNumber(x.Node)
		switch {
		case ok && x.Operator == "-":
			return -v, true
		case ok && x.Operator == "+":
			return v, true
		}
	case *ast.BinaryNode:
		a, aok := constNumber(x.Left)
		b, bok := constNumber(x.Right)
		if !aok || !bok {
			return 0, false
		}
		switch x.Operator {
		case "+":
			return a + b, true
		case "-":
			return a - b, true
		case "*":
			return a * b, true
		}
	}
	return 0, false
}

func predicateName(k plan.ExprKind) string {
	if k == plan.CaseExpr {
		return "case condition"
	}
	return "where predicate"
}

// issuesOf maps an expr compile error to issues. env may be nil (Compile).
func issuesOf(src string, err error, env *typedEnv, ctx Context) []Issue {
	var names map[string]string
	if env != nil {
		names = env.names
	}
	var fe *file.Error
	if !errors.As(err, &fe) {
		s, e := trimmedSpan(src)
		msg := rewriteMessage(err.Error(), names)
		if got, ok := strings.CutPrefix(msg, "expected bool, but got "); ok {
			return []Issue{{Start: s, End: e, Code: lang.NotBool, Severity: lang.Error,
				Message: fmt.Sprintf("%s must be bool, got %s", predicateName(ctx.Kind), got)}}
		}
		return []Issue{{Start: s, End: e, Code: lang.ExprTypeError, Severity: lang.Error, Message: msg}}
	}
	start, end := byteSpan(src, fe.From, fe.To)
	is := Issue{Start: start, End: end, Severity: lang.Error}
	raw := fe.Message

	if _, perr := parser.Parse(src); perr != nil {
		is.Code = lang.SyntaxError
		is.Message = rewriteMessage(raw, names)
		if strings.Contains(raw, "EOF") {
			_, e := trimmedSpan(src)
			is.Start, is.End = e, e
		}
		return []Issue{is}
	}
	if name, ok := strings.CutPrefix(raw, "unknown name "); ok {
		if calledNames(src)[name] {
			is.Code = lang.UnknownFunction
			is.Message = fmt.Sprintf("unknown function %q", name)
			if s := functionLike(name); s != "" {
				is.Detail = fmt.Sprintf("did you mean %q?", s)
			}
			return []Issue{is}
		}
		is.Code = lang.UnknownField
		var cands []string
		if name == "params" && ctx.Params == nil {
			is.Message = "params is only defined inside a def"
			return []Issue{is}
		}
		if ctx.Input != nil {
			is.Message = fmt.Sprintf("unknown field %q in %s", name, ctx.Input)
			for _, f := range ctx.Input.Fields {
				cands = append(cands, f.Name)
			}
		} else {
			is.Message = fmt.Sprintf("unknown name %q", name)
		}
		if env != nil && env.hasMeta {
			cands = append(cands, "meta")
		}
		if env != nil && env.hasPrm {
			cands = append(cands, "params")
		}
		if s := didYouMean(name, cands); s != "" {
			is.Detail = fmt.Sprintf("did you mean %q?", s)
		}
		return []Issue{is}
	}
	if rest, ok := strings.CutPrefix(raw, "type "); ok {
		for _, sep := range []string{" has no field ", " has no method "} {
			i := strings.LastIndex(rest, sep)
			if i < 0 {
				continue
			}
			goName, name := rest[:i], rest[i+len(sep):]
			owner := rewriteMessage(goName, names)
			if sep == " has no method " {
				is.Code = lang.UnknownFunction
				is.Message = fmt.Sprintf("unknown method %q of %s", name, owner)
				return []Issue{is}
			}
			var rec *types.Type
			if env != nil {
				rec = env.recordByGoName(strings.TrimPrefix(goName, "*"))
			}
			if rec == nil {
				// Not a record: a scalar, list or map has no fields.
				is.Code = lang.ExprTypeError
				is.Message = fmt.Sprintf("cannot read field %q of %s", name, owner)
				return []Issue{is}
			}
			is.Code = lang.UnknownField
			is.Message = fmt.Sprintf("unknown field %q in %s", name, owner)
			var cands []string
			for _, f := range rec.Fields {
				cands = append(cands, f.Name)
			}
			if s := didYouMean(name, cands); s != "" {
				is.Detail = fmt.Sprintf("did you mean %q?", s)
			}
			return []Issue{is}
		}
	}
	if name, ok := strings.CutPrefix(raw, "unknown field "); ok {
		is.Code = lang.UnknownField
		is.Message = fmt.Sprintf("unknown field %q", name)
		return []Issue{is}
	}
	is.Code = lang.ExprTypeError
	is.Message = rewriteMessage(raw, names)
	return []Issue{is}
}

// calledNames returns the identifiers that src calls as functions.
func calledNames(src string) map[string]bool {
	out := map[string]bool{}
	tree, err := parser.Parse(src)
	if err != nil {
		return out
	}
	ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
		if c, ok := (*n).(*ast.CallNode); ok {
			if id, ok := c.Callee.(*ast.IdentifierNode); ok {
				out[id.Value] = true
			}
		}
	}))
	return out
}

// unknownCalls reports calls of names that are neither builtins nor
// library functions (PIPE113).
func unknownCalls(src string) []Issue {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	known := map[string]bool{}
	for _, n := range functionNames() {
		known[n] = true
	}
	var out []Issue
	ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
		c, ok := (*n).(*ast.CallNode)
		if !ok {
			return
		}
		id, ok := c.Callee.(*ast.IdentifierNode)
		if !ok || known[id.Value] {
			return
		}
		loc := id.Location()
		start, end := byteSpan(src, loc.From, loc.To)
		is := Issue{Start: start, End: end, Code: lang.UnknownFunction, Severity: lang.Error,
			Message: fmt.Sprintf("unknown function %q", id.Value)}
		if s := functionLike(id.Value); s != "" {
			is.Detail = fmt.Sprintf("did you mean %q?", s)
		}
		out = append(out, is)
	}))
	return out
}

// functionLike returns the function a call of an unknown name most likely
// meant: one spelt alike, one that differs only in case and underscores
// (toUpper, parseTime for parse_time), or the longest one its name
// contains (uppercase, to_upper: upper; strlen: len).
func functionLike(name string) string {
	if s := didYouMean(name, functionNames()); s != "" {
		return s
	}
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "") }
	n, best := norm(name), ""
	for _, f := range functionNames() {
		switch nf := norm(f); {
		case nf == n:
			return f
		case len(nf) >= 3 && strings.Contains(n, nf) && len(f) > len(best):
			best = f
		}
	}
	return best
}

// functionNames lists every callable name: expr builtins and the library.
func functionNames() []string {
	var out []string
	for _, b := range builtin.Builtins {
		out = append(out, b.Name)
	}
	for _, f := range fn.Functions {
		out = append(out, f.Name)
	}
	return out
}

// inferType returns the pipe type of a checked node. It refines two cases
// where expr types as any: `a ?? b` with an optional a of b's type, and a
// ternary whose branches differ only by optionality or int/float.
func (e *typedEnv) inferType(n ast.Node) *types.Type {
	switch x := n.(type) {
	case *ast.BinaryNode:
		if x.Operator == "??" {
			l := e.inferType(x.Left).WithOptional(false)
			r := e.inferType(x.Right)
			if u := unify(l, r); u != nil {
				return u
			}
		}
	case *ast.ConditionalNode:
		// A branch that fails the record gives no value: the other's type.
		switch {
		case e.fails(x.Exp1):
			return e.inferType(x.Exp2)
		case e.fails(x.Exp2):
			return e.inferType(x.Exp1)
		}
		if u := unify(e.inferType(x.Exp1), e.inferType(x.Exp2)); u != nil {
			return u
		}
	case *ast.NilNode:
		return types.AnyType.WithOptional(true)
	case *ast.CallNode:
		// coalesce(a, b, ...) has its arguments' common type; it is
		// optional only when every argument is.
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && id.Value == "coalesce" && e.input.Field("coalesce") == nil && len(x.Arguments) > 0 {
			var u *types.Type
			opt := true
			for _, a := range x.Arguments {
				at := e.inferType(a)
				if _, isNil := a.(*ast.NilNode); isNil {
					continue
				}
				opt = opt && at.Optional
				if u == nil {
					u = at.WithOptional(false)
				} else if u = unify(u, at.WithOptional(false)); u == nil {
					break
				}
			}
			if u != nil {
				return u.WithOptional(opt)
			}
		}
	}
	return e.pipeType(n.Type())
}

// fails reports whether n is a call of fail, which never returns a value.
func (e *typedEnv) fails(n ast.Node) bool { return isFail(n) && e.input.Field("fail") == nil }

// unify returns the common type of a and b, or nil.
func unify(a, b *types.Type) *types.Type {
	if a.Kind == types.Any && a.Optional { // nil
		return b.WithOptional(true)
	}
	if b.Kind == types.Any && b.Optional {
		return a.WithOptional(true)
	}
	opt := a.Optional || b.Optional
	a, b = a.WithOptional(false), b.WithOptional(false)
	switch {
	case a.Kind == types.Any || b.Kind == types.Any:
		return nil
	case types.Equal(a, b):
		return a.WithOptional(opt)
	case a.Kind == types.Int && b.Kind == types.Float, a.Kind == types.Float && b.Kind == types.Int:
		return types.FloatType.WithOptional(opt)
	}
	return nil
}

// nowCall returns the first call of a non-deterministic function in the
// tree, or nil.
func nowCall(root ast.Node, env *typedEnv) ast.Node {
	var found ast.Node
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		c, ok := (*n).(*ast.CallNode)
		if !ok {
			return
		}
		if id, ok := c.Callee.(*ast.IdentifierNode); ok && fn.IsNonDeterministic(id.Value) && env.input.Field(id.Value) == nil {
			if found == nil || c.Location().From < found.Location().From {
				found = c
			}
		}
	}))
	return found
}

// constantBool reports the value of a predicate that reads no field, no
// meta, no params and calls nothing non-deterministic; it compiles the
// checked tree and runs it.
func constantBool(tree *parser.Tree, cfg *conf.Config, env *typedEnv) (val, ok bool) {
	root := tree.Node
	if b, isBool := root.(*ast.BoolNode); isBool {
		return b.Value, true
	}
	constant := true
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		switch x := (*n).(type) {
		case *ast.IdentifierNode:
			constant = false
		case *ast.CallNode:
			if id, ok := x.Callee.(*ast.IdentifierNode); ok && fn.IsNonDeterministic(id.Value) {
				constant = false
			}
		}
	}))
	if !constant || nowCall(root, env) != nil {
		return false, false
	}
	defer func() { _ = recover() }()
	prog, err := compiler.Compile(tree, cfg)
	if err != nil {
		return false, false
	}
	out, err := expr.Run(prog, env.zero())
	if err != nil {
		return false, false
	}
	b, isBool := out.(bool)
	return b, isBool
}
