package exprs

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/parser"

	"pipe.dev/pipe/lang"
)

// rewriteMessage rewrites an expr message so that no Go type shows: the
// anonymous struct types of the typed environment become pipe type names
// (names maps their String() to the pipe name), and Go types become pipe
// types (float64 -> float, *T -> T?, []T -> list<T>, interface {} -> any).
func rewriteMessage(msg string, names map[string]string) string {
	var subst []string
	if len(names) > 0 {
		keys := make([]string, 0, len(names))
		for k := range names {
			keys = append(keys, k)
		}
		// Longest first: an outer struct's text contains its fields' structs.
		sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
		for _, k := range keys {
			if strings.Contains(msg, k) {
				msg = strings.ReplaceAll(msg, k, "\x00"+strconv.Itoa(len(subst))+"\x00")
				subst = append(subst, names[k])
			}
		}
	}
	msg = strings.ReplaceAll(msg, "<nil>", "null")
	var b strings.Builder
	for i := 0; i < len(msg); {
		if i == 0 || !isWordByte(msg[i-1]) {
			if out, j, ok := parseGoType(msg, i, subst); ok {
				b.WriteString(out)
				i = j
				continue
			}
		}
		b.WriteByte(msg[i])
		i++
	}
	out := strings.TrimSpace(b.String())
	out = strings.TrimSuffix(out, ".")
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

var goScalars = []struct{ goName, pipe string }{
	{"interface {}", "any"},
	{"fn.Secret", "secret"},
	{"time.Time", "timestamp"},
	{"time.Duration", "duration"},
	{"float64", "float"},
	{"float32", "float"},
	{"uint64", "int"},
	{"uint32", "int"},
	{"uint16", "int"},
	{"uint8", "int"},
	{"uint", "int"},
	{"int64", "int"},
	{"int32", "int"},
	{"int16", "int"},
	{"int8", "int"},
	{"int", "int"},
	{"string", "string"},
	{"bool", "bool"},
	{"struct {}", "{}"},
}

// parseGoType parses a Go type at s[i:] and returns it in pipe syntax.
func parseGoType(s string, i int, subst []string) (string, int, bool) {
	if i >= len(s) {
		return "", i, false
	}
	switch {
	case s[i] == 0:
		end := strings.IndexByte(s[i+1:], 0)
		if end < 0 {
			return "", i, false
		}
		n, err := strconv.Atoi(s[i+1 : i+1+end])
		if err != nil || n >= len(subst) {
			return "", i, false
		}
		return subst[n], i + end + 2, true
	case s[i] == '*':
		elem, j, ok := parseGoType(s, i+1, subst)
		if !ok {
			return "", i, false
		}
		return elem + "?", j, true
	case strings.HasPrefix(s[i:], "[]uint8"):
		return "bytes", i + len("[]uint8"), true
	case strings.HasPrefix(s[i:], "[]"):
		elem, j, ok := parseGoType(s, i+2, subst)
		if !ok {
			return "", i, false
		}
		return "list<" + elem + ">", j, true
	case strings.HasPrefix(s[i:], "map["):
		key, j, ok := parseGoType(s, i+4, subst)
		if !ok || j >= len(s) || s[j] != ']' {
			return "", i, false
		}
		elem, k, ok := parseGoType(s, j+1, subst)
		if !ok {
			return "", i, false
		}
		return "map<" + key + ", " + elem + ">", k, true
	}
	for _, sc := range goScalars {
		if strings.HasPrefix(s[i:], sc.goName) {
			j := i + len(sc.goName)
			if j < len(s) && isWordByte(s[j]) && s[j] != '.' {
				continue
			}
			return sc.pipe, j, true
		}
	}
	return "", i, false
}

// byteSpan converts rune offsets from and to into byte offsets into src.
// When to does not lie after from, the span covers the identifier (or the
// single character) at from.
func byteSpan(src string, from, to int) (int, int) {
	start := runeToByte(src, from)
	end := start
	if to > from {
		end = runeToByte(src, to)
	}
	if end <= start {
		end = start
		for end < len(src) && isIdentByte(src[end]) {
			end++
		}
		if end == start && end < len(src) {
			_, n := utf8.DecodeRuneInString(src[end:])
			end += n
		}
	}
	return start, end
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// runeToByte returns the byte offset of the n-th rune of s (len(s) past
// the end).
func runeToByte(s string, n int) int {
	if n <= 0 {
		return 0
	}
	i := 0
	for off := range s {
		if i == n {
			return off
		}
		i++
	}
	return len(s)
}

// trimmedSpan returns the span of src without surrounding white space.
func trimmedSpan(src string) (int, int) {
	start := len(src) - len(strings.TrimLeft(src, " \t\r\n"))
	end := len(strings.TrimRight(src, " \t\r\n"))
	if end < start {
		end = start
	}
	return start, end
}

// didYouMean returns the candidate closest to name, if close enough.
func didYouMean(name string, candidates []string) string {
	limit := min(3, len(name)/3+1)
	best, bestD := "", limit+1
	for _, c := range candidates {
		if c == name {
			continue
		}
		d := lang.EditDistance(strings.ToLower(name), strings.ToLower(c))
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	return best
}

// callMismatch rewrites expr's messages about a call whose arguments fit
// none of the function's signatures ("not enough arguments to call trim"
// for trim(amount), since expr reports the last signature it tried) into
// what the function takes and what it was given: "trim takes string or
// (string, string), not float". It reports false when it cannot tell.
func callMismatch(src string, is Issue, cfg *conf.Config, env *typedEnv) (string, bool) {
	name := ""
	for _, p := range []string{"not enough arguments to call ", "too many arguments to call "} {
		if n, ok := strings.CutPrefix(is.Message, p); ok {
			name = n
		}
	}
	if i := strings.Index(is.Message, " to call "); name == "" && strings.HasPrefix(is.Message, "cannot use ") && i > 0 {
		name = is.Message[i+len(" to call "):]
	}
	f := cfg.Functions[name]
	if f == nil {
		f = cfg.Builtins[name]
	}
	if f == nil || len(f.Types) == 0 {
		return "", false
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return "", false
	}
	var args []ast.Node
	found := false
	ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
		callee, as := "", []ast.Node(nil)
		switch x := (*n).(type) {
		case *ast.CallNode:
			if id, ok := x.Callee.(*ast.IdentifierNode); ok {
				callee, as = id.Value, x.Arguments
			}
		case *ast.BuiltinNode:
			callee, as = x.Name, x.Arguments
		}
		// The innermost call of that name around the issue: a walk
		// visits children first.
		if start, end := nodeSpan(src, *n); !found && callee == name && start <= is.Start && is.Start < end {
			args, found = as, true
		}
	}))
	if !found {
		return "", false
	}
	given := make([]string, len(args))
	for i, a := range args {
		s, e := nodeSpan(src, a)
		t, err := checker.ParseCheck(src[s:e], cfg)
		if err != nil {
			return "", false
		}
		given[i] = env.pipeType(t.Node.Type()).String()
	}
	var sigs []string
	arity := false
	for _, ft := range f.Types {
		in := make([]string, ft.NumIn())
		for i := range in {
			in[i] = env.pipeType(ft.In(i)).String()
			if ft.IsVariadic() && i == len(in)-1 {
				in[i] = env.pipeType(ft.In(i).Elem()).String() + "..."
			}
		}
		arity = arity || len(in) == len(args) || ft.IsVariadic() && len(args) >= len(in)-1
		sig := strings.Join(in, ", ")
		if len(in) != 1 {
			sig = "(" + sig + ")"
		}
		sigs = append(sigs, sig)
	}
	if !arity {
		return fmt.Sprintf("%s takes %s, not %s", name, strings.Join(sigs, " or "), plural(len(args), "argument")), true
	}
	got := strings.Join(given, ", ")
	if len(given) != 1 {
		got = "(" + got + ")"
	}
	return fmt.Sprintf("%s takes %s, not %s", name, strings.Join(sigs, " or "), got), true
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return strconv.Itoa(n) + " " + s + "s"
}
