package parser

import (
	"fmt"
	"strings"

	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
)

// declKeywords start a top-level declaration.
var declKeywords = map[string]bool{
	"pipeline": true, "import": true, "schema": true, "def": true,
	"source": true, "transform": true, "sink": true, "test": true,
}

// expectWords translates participle's grammar names into plain words.
var expectWords = map[string]string{
	"<ident>":     "a name",
	"<string>":    "a string",
	"<rawstring>": "a string",
	"<expr>":      "an expression",
	"<int>":       "a number",
	"<float>":     "a number",
	"<duration>":  "a duration",
	"<size>":      "a size",
	"<eof>":       "end of file",
	"TopItem":     "a declaration (pipeline, import, schema, def, source, transform, sink, test) or a flow",
	"BodyItem":    "an attribute or body item",
	"TestItem":    "given, expect or an attribute",
	"Value":       "a value",
	"Type":        "a type",
	"Field":       "a field",
	"Param":       "a parameter",
	"Path":        "a name",
	"Ident":       "a name",
	"PortRef":     "a stage name",
	"FlowNode":    "a stage name or [list]",
	"RefOrCall":   "a name",
	"Arg":         "an argument",
	"MapEntry":    "a map entry",
	"StringLit":   "a string",
	"Number":      "a number",
	"List":        "a list",
	"Map":         "a map",
	"Member":      "an attribute",
	"Expr":        "an expression",
}

// plainExpect turns participle's expectation text ("\"}\" | BodyItem")
// into words ("\"}\" or an attribute or body item").
func plainExpect(e string) string {
	e = strings.TrimSpace(e)
	if e == "" {
		return ""
	}
	var words []string
	seen := map[string]bool{}
	for _, alt := range strings.Split(e, "|") {
		alt = strings.TrimSpace(alt)
		alt = strings.Trim(alt, "()")
		alt = strings.TrimSpace(alt)
		if fields := strings.Fields(alt); len(fields) > 0 {
			alt = fields[0]
		}
		if w, ok := expectWords[strings.ToLower(alt)]; ok && strings.HasPrefix(alt, "<") {
			alt = w
		} else if w, ok := expectWords[alt]; ok {
			alt = w
		}
		alt = strings.TrimRight(alt, "*+?")
		if alt == "" || seen[alt] {
			continue
		}
		seen[alt] = true
		words = append(words, alt)
	}
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// explain builds the diagnostic of a syntax error at token idx.
func explain(lines *lang.Lines, toks []lexer.Token, idx int, unexpected lexer.Token, expect, raw string) lang.Diagnostic {
	spanOf := func(t lexer.Token) lang.Span {
		end := t.Pos.Offset + len(t.Value)
		if t.Type == lexer.EOF {
			end = t.Pos.Offset
		}
		return lines.Span(t.Pos.Offset, end)
	}
	if idx < 0 {
		idx = len(toks) - 1
	}

	// Brackets of the outer grammar still open before the error.
	var stack []lexer.Token
	var prev *lexer.Token
	for i := 0; i < idx; i++ {
		t := toks[i]
		if t.Type == tokWhitespace || t.Type == tokComment {
			continue
		}
		prev = &toks[i]
		if t.Type != tokPunct {
			continue
		}
		switch t.Value {
		case "{", "[", "(":
			stack = append(stack, t)
		case "}", "]", ")":
			if len(stack) > 0 && string(closerOf(stack[len(stack)-1].Value[0])) == t.Value {
				stack = stack[:len(stack)-1]
			}
		}
	}
	unclosed := func(b lexer.Token, format string, args ...any) lang.Diagnostic {
		d := lang.Errorf(lang.UnclosedBracket, spanOf(b), "unclosed %q: missing %q", b.Value, string(closerOf(b.Value[0])))
		if format != "" {
			d.Message += " " + fmt.Sprintf(format, args...)
		}
		return d
	}
	innermostBrace := func(before int) *lexer.Token {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].Value == "{" && stack[i].Pos.Offset < before {
				return &stack[i]
			}
		}
		return nil
	}

	// End of file inside a bracket: point at the bracket.
	if unexpected.Type == lexer.EOF && len(stack) > 0 {
		return unclosed(stack[len(stack)-1], "")
	}

	// The whole file leaves a bracket open (participle may report such a
	// file at an earlier token): point at the bracket if it comes first.
	if b, kw := unclosedAtEOF(toks); b != nil && b.Pos.Offset <= unexpected.Pos.Offset {
		if kw != nil {
			return unclosed(*b, "before %q on line %d", kw.Value, kw.Pos.Line)
		}
		return unclosed(*b, "")
	}

	// A declaration keyword at the start of a line inside a block: the
	// block before it is missing its "}".
	for _, t := range []*lexer.Token{prev, &unexpected} {
		if t != nil && t.Type == tokIdent && t.Pos.Column == 1 && declKeywords[t.Value] {
			if b := innermostBrace(t.Pos.Offset); b != nil {
				return unclosed(*b, "before %q on line %d", t.Value, t.Pos.Line)
			}
		}
	}

	// A closing bracket that closes nothing, or the wrong thing.
	if unexpected.Type == tokPunct && strings.Contains("}])", unexpected.Value) {
		opened := false
		for _, b := range stack {
			opened = opened || string(closerOf(b.Value[0])) == unexpected.Value
		}
		if !opened {
			return lang.Errorf(lang.SyntaxError, spanOf(unexpected), "unexpected %q: nothing to close", unexpected.Value)
		}
		top := stack[len(stack)-1]
		if string(closerOf(top.Value[0])) != unexpected.Value {
			return unclosed(top, "before %q on line %d", unexpected.Value, unexpected.Pos.Line)
		}
	}

	// Where the mistake is: at the unexpected token, unless it is on a
	// later line than the token before it; then something is missing at
	// the end of that line.
	at := spanOf(unexpected)
	if prev != nil && (unexpected.Pos.Line > prev.Pos.Line || unexpected.Type == lexer.EOF) {
		at = spanOf(*prev)
	}
	what := describe(unexpected)
	// `topic =` then `x = 1` on the next line: the value is missing at
	// the end of the first line (newlines do not end values, so x was
	// taken as the value of topic).
	if unexpected.Type == tokPunct && (unexpected.Value == "=" || unexpected.Value == ":=") && prev != nil && prev.Type == tokIdent {
		if pp := prevSignificant(toks, prev); pp != nil && pp.Type == tokPunct && pp.Value == "=" && pp.Pos.Line < prev.Pos.Line {
			return lang.Errorf(lang.SyntaxError, spanOf(*pp), "expected a value after \"=\" at the end of the line")
		}
	}
	if unexpected.Type == tokPunct && (unexpected.Value == "=" || unexpected.Value == ":=") &&
		(prev == nil || (prev.Type == tokPunct && (prev.Value == "{" || prev.Value == ",")) || prev.Pos.Line < unexpected.Pos.Line) {
		return lang.Errorf(lang.SyntaxError, spanOf(unexpected), "expected a name before %q", unexpected.Value)
	}
	if prev != nil && prev.Type == tokPunct && prev.Value == "," && len(stack) > 0 && stack[len(stack)-1].Value == "[" {
		return lang.Errorf(lang.SyntaxError, at, "expected a value or \"]\" after \",\", found %s", what)
	}
	if prev != nil && prev.Type == tokPunct {
		switch prev.Value {
		case "=":
			return lang.Errorf(lang.SyntaxError, at, "expected a value after \"=\", found %s", what)
		case "->":
			return lang.Errorf(lang.SyntaxError, at, "expected a stage name or [list] after \"->\", found %s", what)
		case ",":
			if e := plainExpect(expect); e != "" {
				return lang.Errorf(lang.SyntaxError, at, "expected %s after \",\", found %s", e, what)
			}
		case ":":
			if e := plainExpect(expect); e != "" {
				return lang.Errorf(lang.SyntaxError, at, "expected %s after \":\", found %s", e, what)
			}
		}
	}
	if prev != nil && prev.Type == tokIdent {
		if want, ok := afterKeyword[prev.Value]; ok && (unexpected.Type != tokIdent || want.name == "") {
			return lang.Errorf(lang.SyntaxError, at, "expected %s after %q, found %s", want.what, prev.Value, what)
		}
	}
	// `tasks 4`: a name then a value on the same line.
	if prev != nil && prev.Type == tokIdent && unexpected.Pos.Line == prev.Pos.Line && isValueToken(unexpected) {
		return lang.Errorf(lang.SyntaxError, spanOf(unexpected), "unexpected %s after %q: expected \"=\" (attribute) or \":=\" (expression)", what, prev.Value)
	}
	if unexpected.Type == tokExpr {
		return lang.Errorf(lang.SyntaxError, spanOf(unexpected), "unexpected expression %q here", unexpected.Value)
	}
	if e := plainExpect(expect); e != "" {
		return lang.Errorf(lang.SyntaxError, at, "unexpected %s, expected %s", what, e)
	}
	if raw == "" {
		raw = "unexpected " + what
	}
	return lang.Errorf(lang.SyntaxError, at, "%s", raw)
}

func isValueToken(t lexer.Token) bool {
	switch t.Type {
	case tokInt, tokFloat, tokDuration, tokSize, tokString, tokRawString:
		return true
	case tokPunct:
		return t.Value == "["
	}
	return false
}

// unclosedAtEOF scans the brackets of the outer grammar. If the file ends
// with one open, it returns the bracket to blame: the innermost "{" open
// at the first declaration keyword that starts a line inside a block
// (with that keyword), or else the innermost bracket open at the end.
func unclosedAtEOF(toks []lexer.Token) (*lexer.Token, *lexer.Token) {
	var stack []int
	var blame, kw, suspect *lexer.Token
	for i := range toks {
		t := &toks[i]
		switch t.Type {
		case tokPunct:
			switch t.Value {
			case "{", "[", "(":
				stack = append(stack, i)
			case "}", "]", ")":
				if len(stack) == 0 || string(closerOf(toks[stack[len(stack)-1]].Value[0])) != t.Value {
					return nil, nil // a mismatch, not an unclosed bracket
				}
				// A "}" first on its line and left of the line of the
				// "{" it closes probably closes an outer block: the inner
				// one is then the unclosed one.
				if o := &toks[stack[len(stack)-1]]; t.Value == "}" && suspect == nil && firstOnLine(toks, i) && t.Pos.Column < indentOf(toks, stack[len(stack)-1]) {
					suspect = o
				}
				stack = stack[:len(stack)-1]
			}
		case tokIdent:
			if blame == nil && t.Pos.Column == 1 && declKeywords[t.Value] {
				for j := len(stack) - 1; j >= 0; j-- {
					if toks[stack[j]].Value == "{" {
						blame, kw = &toks[stack[j]], t
						break
					}
				}
			}
		}
	}
	if len(stack) == 0 {
		return nil, nil
	}
	if suspect != nil {
		return suspect, nil
	}
	if blame != nil {
		return blame, kw
	}
	return &toks[stack[len(stack)-1]], nil
}

// firstOnLine reports whether token i is the first significant one on its line.
func firstOnLine(toks []lexer.Token, i int) bool {
	for j := i - 1; j >= 0; j-- {
		t := toks[j]
		if t.Pos.Line != toks[i].Pos.Line && t.Type != tokWhitespace {
			return true
		}
		if t.Type == tokWhitespace {
			if strings.Contains(t.Value, "\n") {
				return true
			}
			continue
		}
		return false
	}
	return true
}

// indentOf returns the column of the first significant token on the line
// of token i.
func indentOf(toks []lexer.Token, i int) int {
	col := toks[i].Pos.Column
	for j := i - 1; j >= 0 && toks[j].Pos.Line == toks[i].Pos.Line; j-- {
		if toks[j].Type != tokWhitespace && toks[j].Type != tokComment {
			col = toks[j].Pos.Column
		}
	}
	return col
}

// afterKeyword says what must follow a keyword. name is set when a name
// (an Ident token) is what must follow.
var afterKeyword = map[string]struct{ what, name string }{
	"keep":      {"a field name", "name"},
	"drop":      {"a field name", "name"},
	"case":      {"a port name", "name"},
	"else":      {"a port name", "name"},
	"given":     {"a source name", "name"},
	"expect":    {"a sink or port name", "name"},
	"as":        {"an import alias", "name"},
	"schema":    {"a schema name", "name"},
	"source":    {"a stage name", "name"},
	"transform": {"a stage name", "name"},
	"sink":      {"a stage name", "name"},
	"import":    {"a string (the file to import)", ""},
	"test":      {"a string (the test name)", ""},
	"count":     {"a number", ""},
	"def":       {"source, transform or sink", ""},
}

// prevSignificant returns the significant token before t in toks, or nil.
func prevSignificant(toks []lexer.Token, t *lexer.Token) *lexer.Token {
	var last *lexer.Token
	for i := range toks {
		if toks[i].Pos.Offset >= t.Pos.Offset {
			return last
		}
		if toks[i].Type != tokWhitespace && toks[i].Type != tokComment {
			last = &toks[i]
		}
	}
	return last
}
