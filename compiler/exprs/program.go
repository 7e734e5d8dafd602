package exprs

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	exprtypes "github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/fn"
)

// Program is the run-time form of one expression.
type Program struct {
	prog      *vm.Program
	kind      plan.ExprKind
	want      *types.Type // result type to enforce, nil for none
	usesMeta  bool
	usesParam bool
}

// RunError is an error raised while evaluating an expression. Start and End
// are byte offsets into the expression source when known (End > Start).
type RunError struct {
	Start, End int
	Message    string
	Err        error // the underlying error, if any
}

func (e *RunError) Error() string { return e.Message }
func (e *RunError) Unwrap() error { return e.Err }

// Compile builds the run-time program of src. At run time the environment
// is the record itself (map[string]any), plus "meta" and "params" when the
// expression uses them. Compile type-checks src against the run-time
// representation of ctx.Input; the compiler has already run [Check], so an
// error here means the plan and the expression disagree.
func Compile(src string, ctx Context, opts Options) (p *Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("compile expression %q: internal error: %v", src, r)
		}
	}()
	// No expr.AsBool here: its run-time cast turns null into false and
	// panics on other values; Run checks predicate results itself.
	eo := []expr.Option{expr.Env(runtimeEnv(ctx))}
	eo = append(eo, fn.Options(opts.Now)...)
	eo = append(eo, expr.Function(fetchName, fetch, new(func(any, string) any)), expr.Patch(fetchPatch{}))
	eo = append(eo, expr.Function(TimeFunc, parseTime, new(func(string) time.Time)))
	prog, err := expr.Compile(src, eo...)
	if err != nil {
		is := issuesOf(src, err, nil, ctx)
		if len(is) > 0 {
			return nil, fmt.Errorf("expression %q: %s", src, is[0].Message)
		}
		return nil, fmt.Errorf("expression %q: %v", src, err)
	}
	p = &Program{prog: prog, kind: ctx.Kind, want: ctx.Want}
	if p.want != nil && p.want.Kind == types.Any && !p.want.Optional {
		p.want = nil
	}
	root := prog.Node()
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		if id, ok := (*n).(*ast.IdentifierNode); ok {
			switch id.Value {
			case "meta":
				p.usesMeta = true
			case "params":
				p.usesParam = true
			}
		}
	}))
	return p, nil
}

// UsesMeta reports whether the expression reads meta.
func (p *Program) UsesMeta() bool { return p.usesMeta }

// UsesParams reports whether the expression reads params.
func (p *Program) UsesParams() bool { return p.usesParam }

// Run evaluates p against env (the record, plus "meta" and "params" when
// used). v may be a VM owned by the calling goroutine, reused between
// calls; nil allocates one. The result follows lang/types' representation:
// ints are int64, lists []any, maps and records map[string]any. A where or
// case expression returns a bool or an error. When Compile was given
// Context.Want (the annotation, or the type [Check] inferred), the result
// is converted to it where lossless (int to float) and a result of another
// kind, or null for a non-optional type, is an error.
func (p *Program) Run(v *vm.VM, env map[string]any) (out any, err error) {
	if v == nil {
		v = &vm.VM{}
	}
	out, err = v.Run(p.prog, env)
	if err != nil {
		return nil, runError(p.prog, err, env)
	}
	switch p.kind {
	case plan.WhereExpr, plan.CaseExpr:
		if _, ok := out.(bool); !ok {
			return nil, &RunError{Message: fmt.Sprintf("predicate is %s, not bool", fn.TypeName(out))}
		}
		return out, nil
	}
	out = Normalize(out)
	if p.want != nil {
		return coerce(out, p.want)
	}
	return out, nil
}

// coerce checks a normalized value against t (shallowly: the elements of
// lists and maps are not visited) and widens int to float.
func coerce(v any, t *types.Type) (any, error) {
	if v == nil {
		if t.Optional || t.Kind == types.Any {
			return nil, nil
		}
		return nil, &RunError{Message: fmt.Sprintf("result is null, want %s", t)}
	}
	ok := true
	switch t.Kind {
	case types.Float:
		if n, isInt := v.(int64); isInt {
			return float64(n), nil
		}
		_, ok = v.(float64)
	case types.Int:
		_, ok = v.(int64)
	case types.String:
		_, ok = v.(string)
	case types.Bool:
		_, ok = v.(bool)
	case types.Timestamp:
		_, ok = v.(time.Time)
	case types.Bytes:
		_, ok = v.([]byte)
	case types.List:
		_, ok = v.([]any)
	case types.Map, types.Record:
		_, ok = v.(map[string]any)
	}
	if !ok {
		return nil, &RunError{Message: fmt.Sprintf("result is %s, want %s", fn.TypeName(v), t)}
	}
	return v, nil
}

// runError turns an expr run-time error into a *RunError whose message
// says, in the language's words, which part of the expression failed, why,
// and the values of the fields it read: `upper(note): got null, want string
// (note = null)`. Start and End are the failing part's byte offsets.
func runError(prog *vm.Program, err error, env map[string]any) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return &RunError{Message: runMessage(err.Error()), Err: err}
	}
	src := prog.Source().String()
	start, end := byteSpan(src, fe.From, fe.To)
	if f := (*fn.Failure)(nil); errors.As(err, &f) {
		// fail("...") or assert: the expression's own words, as they are.
		if n := failingNode(prog.Node(), fe.From, src); n != nil {
			start, end = nodeSpan(src, n)
		}
		return &RunError{Start: start, End: end, Message: f.Message, Err: f}
	}
	msg := runMessage(fe.Message)
	if n := failingNode(prog.Node(), fe.From, src); n != nil {
		start, end = nodeSpan(src, n)
		if c, ok := n.(*ast.CallNode); ok {
			if id, ok := c.Callee.(*ast.IdentifierNode); ok {
				msg = strings.TrimPrefix(msg, id.Value+": ") // sha256: argument must be ...
			}
		}
		if text := src[start:end]; !strings.HasPrefix(msg, text) {
			msg = text + ": " + msg
		}
		if vals := fieldValues(n, env); vals != "" {
			msg += " (" + vals + ")"
		}
	}
	return &RunError{Start: start, End: end, Message: msg, Err: fe.Unwrap()}
}

// runMessage rewrites a run-time message of expr or Go so that no Go type
// or internal shows: "interface conversion: any is nil, not string" is
// "got null, want string".
func runMessage(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "interface conversion: "); ok {
		// "interface {} is nil, not string", "any is float64, not string"
		if _, rest, ok = strings.Cut(rest, " is "); ok {
			if got, want, ok := strings.Cut(rest, ", not "); ok {
				if got == "nil" {
					got = "null"
				}
				msg = fmt.Sprintf("got %s, want %s", got, want)
			}
		}
	}
	if strings.HasPrefix(msg, "reflect: ") {
		if strings.Contains(msg, "zero Value") {
			msg = "got null"
		} else {
			msg = "got a value of another type"
		}
	}
	msg = strings.TrimPrefix(msg, "runtime error: ")
	msg = strings.ReplaceAll(msg, "integer divide by zero", "division by zero")
	msg = strings.ReplaceAll(msg, "(array length is", "(list length is")
	return rewriteMessage(msg, nil)
}

// failingNode returns the node an error at rune offset from belongs to:
// the widest node that starts there (expr places an error at its node).
func failingNode(root ast.Node, from int, src string) ast.Node {
	var best ast.Node
	bestLen := -1
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		if (*n).Location().From != from {
			return
		}
		if s, e := nodeSpan(src, *n); e-s > bestLen {
			best, bestLen = *n, e-s
		}
	}))
	return best
}

// fieldValues lists the record fields n reads with their values in env,
// "note = null, amount = 1.5", each value at most 40 bytes of JSON; an
// absent field is null. Names of functions and let variables are no fields.
func fieldValues(n ast.Node, env map[string]any) string {
	lets := map[string]bool{}
	ast.Walk(&n, visitFunc(func(c *ast.Node) {
		if v, ok := (*c).(*ast.VariableDeclaratorNode); ok {
			lets[v.Name] = true
		}
	}))
	var parts []string
	seen := map[string]bool{}
	ast.Walk(&n, visitFunc(func(c *ast.Node) {
		p := runPath(*c)
		top, _, _ := strings.Cut(p, ".")
		if p == "" || top == "params" || lets[top] || (*c).Type().Kind() == reflect.Func {
			return
		}
		p, v, ok := lookupPath(env, p)
		if !ok || seen[p] {
			return
		}
		// A path's prefix (customer in customer.id) adds nothing.
		for i, q := range parts {
			if strings.HasPrefix(p, strings.SplitN(q, " = ", 2)[0]+".") {
				parts = append(parts[:i], parts[i+1:]...)
				break
			}
		}
		seen[p] = true
		b, err := json.Marshal(Normalize(v))
		text := string(b)
		if err != nil {
			text = fn.TypeName(v)
		}
		if len(text) > 40 {
			i := 37
			for i > 0 && !utf8.RuneStart(text[i]) {
				i--
			}
			text = text[:i] + "..."
		}
		parts = append(parts, p+" = "+text)
	}))
	return strings.Join(parts, ", ")
}

// runPath is path for the run-time tree, where a nested field read is a
// call of fetchName.
func runPath(n ast.Node) string {
	if c, ok := n.(*ast.CallNode); ok {
		id, isIdent := c.Callee.(*ast.IdentifierNode)
		if !isIdent || id.Value != fetchName || len(c.Arguments) != 2 {
			return ""
		}
		base, name := runPath(c.Arguments[0]), c.Arguments[1]
		if s, ok := name.(*ast.StringNode); ok && base != "" {
			return base + "." + s.Value
		}
		return ""
	}
	if id, ok := n.(*ast.IdentifierNode); ok && (id.Value == fetchName || id.Value == TimeFunc) {
		return ""
	}
	return path(n)
}

// lookupPath reads a dotted field path in a record. Where a record on the
// way is null or absent it returns the path up to it, with null.
func lookupPath(env map[string]any, p string) (string, any, bool) {
	var v any = env
	parts := strings.Split(p, ".")
	for i, part := range parts {
		m, ok := v.(map[string]any)
		if !ok {
			if v == nil && i > 0 {
				return strings.Join(parts[:i], "."), nil, true
			}
			return "", nil, false
		}
		v = m[part]
	}
	return p, v, true
}

// Normalize converts a value produced by expr into the run-time
// representation of lang/types: any Go integer becomes int64, float32
// float64, a time.Duration its nanoseconds as int64, typed slices []any and
// string-keyed maps map[string]any (recursively). Values already in that
// representation are returned as they are, never modified in place.
func Normalize(v any) any {
	n, _ := normalize(v)
	return n
}

// normalize returns v in the run-time representation and whether it had
// to build a new value.
func normalize(v any) (any, bool) {
	switch x := v.(type) {
	case nil, string, int64, float64, bool, time.Time, []byte:
		return v, false
	case int:
		return int64(x), true
	case []any:
		var out []any
		for i, e := range x {
			n, changed := normalize(e)
			if changed && out == nil {
				out = make([]any, len(x))
				copy(out, x)
			}
			if out != nil {
				out[i] = n
			}
		}
		if out == nil {
			return x, false
		}
		return out, true
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			n, changed := normalize(e)
			if changed && out == nil {
				out = make(map[string]any, len(x))
				for k2, e2 := range x {
					out[k2] = e2
				}
			}
			if out != nil {
				out[k] = n
			}
		}
		if out == nil {
			return x, false
		}
		return out, true
	case int8, int16, int32, uint, uint8, uint16, uint32, uint64:
		return reflect.ValueOf(v).Convert(reflect.TypeOf(int64(0))).Interface(), true
	case float32:
		return float64(x), true
	case time.Duration:
		return int64(x), true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i], _ = normalize(rv.Index(i).Interface())
		}
		return out, true
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return v, false
		}
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()], _ = normalize(it.Value().Interface())
		}
		return out, true
	case reflect.Pointer:
		if rv.IsNil() {
			return nil, true
		}
		n, _ := normalize(rv.Elem().Interface())
		return n, true
	}
	return v, false
}

// runtimeEnv describes the run-time environment to expr's checker with
// expr's map types, so the compiled program loads fields from
// map[string]any records (OpLoadFast) instead of struct fields.
func runtimeEnv(ctx Context) exprtypes.Map {
	env := exprtypes.Map{}
	if ctx.Input != nil && ctx.Input.Kind == types.Record {
		for _, f := range ctx.Input.Fields {
			env[f.Name] = runtimeType(f.Type)
		}
	} else {
		env[exprtypes.Extra] = exprtypes.Any
	}
	env["meta"] = runtimeType(metaType)
	if ctx.Params != nil {
		env["params"] = runtimeType(ctx.Params.WithOptional(false))
	}
	return env
}

// runtimeType maps a pipe type to its run-time expr type. Optional values
// may be nil at run time and are typed any, so the program never assumes
// a concrete type for them.
func runtimeType(t *types.Type) exprtypes.Type {
	if t == nil || t.Optional {
		return exprtypes.Any
	}
	switch t.Kind {
	case types.String:
		return exprtypes.String
	case types.Int:
		return exprtypes.Int64
	case types.Float:
		return exprtypes.Float64
	case types.Bool:
		return exprtypes.Bool
	case types.Timestamp:
		return exprtypes.TypeOf(time.Time{})
	case types.Bytes:
		return exprtypes.TypeOf([]byte(nil))
	case types.Secret:
		return exprtypes.TypeOf(fn.Secret{})
	case types.List:
		return exprtypes.Array(runtimeType(t.Elem))
	case types.Map:
		return exprtypes.Map{exprtypes.Extra: runtimeType(t.Elem)}
	case types.Record:
		m := exprtypes.Map{}
		for _, f := range t.Fields {
			m[f.Name] = runtimeType(f.Type)
		}
		return m
	}
	return exprtypes.Any
}

// TimeFunc is the internal function that turns an RFC 3339 text into a
// timestamp: the compiler writes a def's timestamp parameter as a call of
// it. Its "$" keeps it apart from the language's own names.
const TimeFunc = "$time"

func parseTime(args ...any) (any, error) {
	s, _ := args[0].(string)
	return time.Parse(time.RFC3339Nano, s)
}

// fetchName is the internal function that reads a field of a nested
// record. It cannot clash with a user function: "$" is not an identifier
// character in the language.
const fetchName = "$fetch"

var (
	fetchFuncType = reflect.TypeOf(fetch)
	mapAnyType    = reflect.TypeOf(map[string]any(nil))
)

// fetch reads field args[1] of the record args[0]. Records are
// map[string]any at run time, which it indexes directly; expr's own member
// access goes through reflection for every map.
func fetch(args ...any) (any, error) {
	name, _ := args[1].(string)
	switch m := args[0].(type) {
	case map[string]any:
		return m[name], nil
	case nil:
		return nil, fmt.Errorf("cannot fetch %q from null", name)
	}
	return fetchSlow(args[0], name)
}

// fetchSlow reads a field of any other value the way expr does.
func fetchSlow(from any, name string) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("cannot fetch %q from %s", name, fn.TypeName(from))
		}
	}()
	return runtime.Fetch(from, name), nil
}

// fetchPatch rewrites plain field accesses on records (a.b, not a?.b or
// a.b()) into calls of fetch, keeping the checked type of the access.
type fetchPatch struct{}

func (fetchPatch) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return
	}
	if _, ok := m.Property.(*ast.StringNode); !ok {
		return
	}
	if bt := m.Node.Type(); bt != nil && bt != mapAnyType && bt.Kind() != reflect.Interface {
		return
	}
	callee := &ast.IdentifierNode{Value: fetchName}
	callee.SetType(fetchFuncType)
	callee.SetLocation(m.Location())
	call := &ast.CallNode{Callee: callee, Arguments: []ast.Node{m.Node, m.Property}}
	call.SetNature(*m.Nature())
	call.SetLocation(m.Location())
	*node = call
}

// visitFunc adapts a function to ast.Visitor.
type visitFunc func(n *ast.Node)

func (f visitFunc) Visit(n *ast.Node) { f(n) }
