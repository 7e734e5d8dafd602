package exprs

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
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
		d := levenshtein(strings.ToLower(name), strings.ToLower(c))
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
