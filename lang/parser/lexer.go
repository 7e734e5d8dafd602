package parser

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
)

// Token types of the .pipe lexer. Keywords are Ident tokens; the grammar
// matches them by value.
const (
	tokIdent lexer.TokenType = iota + 1
	tokInt
	tokFloat
	tokDuration
	tokSize
	tokString
	tokRawString
	tokExpr
	tokComment
	tokWhitespace
	tokPunct
)

var symbols = map[string]lexer.TokenType{
	"EOF":        lexer.EOF,
	"Ident":      tokIdent,
	"Int":        tokInt,
	"Float":      tokFloat,
	"Duration":   tokDuration,
	"Size":       tokSize,
	"String":     tokString,
	"RawString":  tokRawString,
	"Expr":       tokExpr,
	"Comment":    tokComment,
	"Whitespace": tokWhitespace,
	"Punct":      tokPunct,
}

// lexDefinition is the hand-written lexer of .pipe files as a participle
// lexer definition. Lex reports the first lexical error as an error;
// [ParseFile] uses the lexer directly and keeps every diagnostic.
type lexDefinition struct{}

// Symbols implements lexer.Definition.
func (lexDefinition) Symbols() map[string]lexer.TokenType { return symbols }

// Lex implements lexer.Definition.
func (d lexDefinition) Lex(filename string, r io.Reader) (lexer.Lexer, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return d.LexBytes(filename, src)
}

// LexString implements lexer.StringDefinition.
func (d lexDefinition) LexString(filename string, input string) (lexer.Lexer, error) {
	return d.LexBytes(filename, []byte(input))
}

// LexBytes implements lexer.BytesDefinition.
func (lexDefinition) LexBytes(filename string, input []byte) (lexer.Lexer, error) {
	toks, diags := lex(filename, input)
	if len(diags) > 0 {
		d := diags[0]
		return nil, &lexError{msg: d.Message, pos: lexer.Position{
			Filename: filename, Offset: d.Span.Start.Offset, Line: d.Span.Start.Line, Column: d.Span.Start.Column,
		}}
	}
	return &tokenStream{toks: toks}, nil
}

// lexError is a lexical error in participle's error form.
type lexError struct {
	msg string
	pos lexer.Position
}

func (e *lexError) Error() string            { return e.pos.String() + ": " + e.msg }
func (e *lexError) Message() string          { return e.msg }
func (e *lexError) Position() lexer.Position { return e.pos }

// tokenStream replays a lexed token slice that ends with EOF.
type tokenStream struct {
	toks []lexer.Token
	i    int
}

func (s *tokenStream) Next() (lexer.Token, error) {
	if s.i >= len(s.toks) {
		return s.toks[len(s.toks)-1], nil
	}
	t := s.toks[s.i]
	s.i++
	return t, nil
}

// scanner turns source bytes into tokens. Positions: byte offset from 0,
// line from 1, rune column from 1.
type scanner struct {
	name  string
	src   []byte
	text  string // src as a string: token values are substrings of it
	off   int
	line  int
	col   int
	toks  []lexer.Token
	diags lang.Diagnostics
	lines *lang.Lines
}

// lex tokenises src. It never stops early: after a lexical error it
// records a diagnostic and resumes, so the parser still gets a usable
// token stream. The last token is always EOF.
func lex(name string, src []byte) ([]lexer.Token, lang.Diagnostics) {
	s := &scanner{name: name, src: src, text: string(src), line: 1, col: 1, toks: make([]lexer.Token, 0, len(src)/3+8)}
	s.run()
	return s.toks, s.diags
}

func (s *scanner) pos() lexer.Position {
	return lexer.Position{Filename: s.name, Offset: s.off, Line: s.line, Column: s.col}
}

func (s *scanner) span(start, end int) lang.Span {
	if s.lines == nil {
		s.lines = lang.NewLines(s.name, s.src)
	}
	return s.lines.Span(start, end)
}

func (s *scanner) errorf(code lang.Code, start, end int, format string, args ...any) *lang.Diagnostic {
	s.diags = append(s.diags, lang.Errorf(code, s.span(start, end), format, args...))
	return &s.diags[len(s.diags)-1]
}

// advance moves the cursor to offset end, updating line and column.
func (s *scanner) advance(end int) {
	for s.off < end {
		c := s.src[s.off]
		if c == '\n' {
			s.line++
			s.col = 1
			s.off++
			continue
		}
		if c < utf8.RuneSelf {
			s.off++
		} else {
			_, w := utf8.DecodeRune(s.src[s.off:end])
			s.off += w
		}
		s.col++
	}
}

// emit appends a token covering [s.off, end) with the given value and
// moves past it.
func (s *scanner) emit(typ lexer.TokenType, end int, value string) {
	s.toks = append(s.toks, lexer.Token{Type: typ, Value: value, Pos: s.pos()})
	s.advance(end)
}

func (s *scanner) emitText(typ lexer.TokenType, end int) {
	s.emit(typ, end, s.text[s.off:end])
}

// prevSignificant returns the last token that is neither whitespace nor a
// comment, or nil.
func (s *scanner) prevSignificant() *lexer.Token {
	for i := len(s.toks) - 1; i >= 0; i-- {
		if t := s.toks[i].Type; t != tokWhitespace && t != tokComment {
			return &s.toks[i]
		}
	}
	return nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (s *scanner) run() {
	src := s.src
	if len(src) >= 3 && src[0] == 0xEF && src[1] == 0xBB && src[2] == 0xBF {
		s.emitText(tokWhitespace, 3)
	}
	for s.off < len(src) {
		c := src[s.off]
		switch {
		case isSpace(c):
			end := s.off + 1
			for end < len(src) && isSpace(src[end]) {
				end++
			}
			s.emitText(tokWhitespace, end)
		case c == '/' && s.off+1 < len(src) && (src[s.off+1] == '/' || src[s.off+1] == '*'):
			s.comment()
		case isIdentStart(c):
			end := s.off + 1
			for end < len(src) && isIdentChar(src[end]) {
				end++
			}
			word := s.text[s.off:end]
			if (word == "where" || word == "when") && s.startsExpr(end) {
				kw := s.off
				s.emit(tokIdent, end, word)
				s.expr(kw, word)
				continue
			}
			s.emit(tokIdent, end, word)
		case isDigit(c):
			s.number()
		case c == '"':
			s.str()
		case c == '`':
			s.rawString()
		case c == ':' && s.off+1 < len(src) && src[s.off+1] == '=':
			op := s.off
			s.emit(tokPunct, s.off+2, ":=")
			s.expr(op, ":=")
		case c == '-' && s.off+1 < len(src) && src[s.off+1] == '>':
			s.emit(tokPunct, s.off+2, "->")
		case strings.IndexByte("{}[](),:=.?<>-", c) >= 0:
			s.emit(tokPunct, s.off+1, string(c))
		default:
			r, w := utf8.DecodeRune(src[s.off:])
			switch {
			case r == utf8.RuneError && w == 1:
				s.errorf(lang.SyntaxError, s.off, s.off+1, "invalid UTF-8 encoding")
			case c == '\'':
				end, _ := skipQuoted(src, s.off)
				s.errorf(lang.SyntaxError, s.off, s.off+1, "strings use double quotes, not '")
				// Parsed on as a double-quoted string of the same length,
				// so that positions inside it stay those of the source: a
				// double quote in it becomes a single one (the file has an error anyway).
				body := strings.TrimSuffix(string(src[s.off+1:end]), "'")
				s.emit(tokString, end, `"`+strings.ReplaceAll(body, `"`, `'`)+`"`)
				continue
			default:
				s.errorf(lang.SyntaxError, s.off, s.off+w, "unexpected character %q", r)
			}
			// Skip the character as whitespace so positions stay exact.
			s.emitText(tokWhitespace, s.off+w)
		}
	}
	s.toks = append(s.toks, lexer.EOFToken(s.pos()))
}

// startsExpr reports whether the keyword where/when ending at end starts
// an expression: it does unless it is preceded by "." or ":" (a field's
// type) or followed by "=", ":", ",", ".", "}" or "->" (then it is a
// plain name).
func (s *scanner) startsExpr(end int) bool {
	if p := s.prevSignificant(); p != nil && p.Type == tokPunct && (p.Value == "." || p.Value == ":") {
		return false
	}
	i := end
	for i < len(s.src) && (s.src[i] == ' ' || s.src[i] == '\t') {
		i++
	}
	if i >= len(s.src) {
		return true
	}
	switch s.src[i] {
	case '=', ':', ',', '.', '}':
		return false
	case '-':
		return !(i+1 < len(s.src) && s.src[i+1] == '>')
	}
	return true
}

func (s *scanner) comment() {
	src := s.src
	start := s.off
	if src[start+1] == '/' {
		end := start + 2
		for end < len(src) && src[end] != '\n' {
			end++
		}
		// A trailing \r belongs to the line ending, not the comment.
		if end > start+2 && src[end-1] == '\r' {
			end--
		}
		s.emitText(tokComment, end)
		return
	}
	i := bytes.Index(src[start+2:], []byte("*/"))
	if i < 0 {
		s.errorf(lang.SyntaxError, start, start+2, "unterminated comment: \"/*\" is never closed with \"*/\"")
		s.emitText(tokComment, len(src))
		return
	}
	s.emitText(tokComment, start+2+i+2)
}

func isDurationUnit(u string) bool { _, ok := lang.DurationUnit(u); return ok }

func isSizeUnit(u string) bool { _, ok := lang.SizeUnit(u); return ok }

// number lexes Int, Float, Duration and Size literals. The whole run of
// letters, digits and dots is classified at once so that 5sx or 1.5s is
// one clear error.
func (s *scanner) number() {
	src := s.src
	start := s.off
	end := start
	for end < len(src) {
		c := src[end]
		if isIdentChar(c) {
			end++
			continue
		}
		if c == '.' && end+1 < len(src) && isDigit(src[end+1]) {
			end++
			continue
		}
		if (c == '+' || c == '-') && (src[end-1] == 'e' || src[end-1] == 'E') && end+1 < len(src) && isDigit(src[end+1]) && isNumberPrefix(src[start:end-1]) {
			end++
			continue
		}
		break
	}
	text := string(src[start:end])
	typ, ok := classifyNumber(text)
	if !ok {
		d := s.errorf(lang.BadLiteral, start, end, "malformed literal %q", text)
		d.Detail = numberHint(text)
		s.emitText(tokInt, end)
		return
	}
	if typ == tokInt || typ == tokFloat {
		if unitEnd, unit := s.spacedUnit(end, typ); unitEnd > 0 {
			joined := text + unit
			d := s.errorf(lang.BadLiteral, start, unitEnd, "malformed literal %q: write %q without a space", string(src[start:unitEnd]), joined)
			if typ == tokFloat && isDurationUnit(unit) {
				d.Message = fmt.Sprintf("malformed duration %q: durations take whole numbers", string(src[start:unitEnd]))
			}
			if isSizeUnit(unit) {
				s.emit(tokSize, unitEnd, joined)
			} else {
				s.emit(tokDuration, unitEnd, joined)
			}
			return
		}
	}
	s.emitText(typ, end)
}

func isNumberPrefix(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	dot := false
	for _, c := range b {
		if c == '.' && !dot {
			dot = true
			continue
		}
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// spacedUnit detects `5 s` or `1 MiB`: a number followed on the same line
// by a unit name that does not itself start an attribute. It returns the
// end of the unit and the unit, or 0.
func (s *scanner) spacedUnit(end int, typ lexer.TokenType) (int, string) {
	src := s.src
	i := end
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	if i == end || i >= len(src) || !isIdentStart(src[i]) {
		return 0, ""
	}
	j := i
	for j < len(src) && isIdentChar(src[j]) {
		j++
	}
	unit := string(src[i:j])
	if !isDurationUnit(unit) && !isSizeUnit(unit) {
		return 0, ""
	}
	if typ == tokFloat && !isSizeUnit(unit) && !isDurationUnit(unit) {
		return 0, ""
	}
	k := j
	for k < len(src) && (src[k] == ' ' || src[k] == '\t') {
		k++
	}
	if k < len(src) {
		switch src[k] {
		case '=', ':', '.', '{', '(':
			return 0, ""
		}
	}
	return j, unit
}

// classifyNumber returns the token type of a numeric literal.
func classifyNumber(t string) (lexer.TokenType, bool) {
	i := 0
	for i < len(t) && isDigit(t[i]) {
		i++
	}
	if i == len(t) {
		return tokInt, true
	}
	// Float or size with a fraction.
	if t[i] == '.' {
		j := i + 1
		for j < len(t) && isDigit(t[j]) {
			j++
		}
		if j == i+1 {
			return 0, false
		}
		rest := t[j:]
		if rest == "" {
			return tokFloat, true
		}
		if isSizeUnit(rest) {
			return tokSize, true
		}
		if isExponent(rest) {
			return tokFloat, true
		}
		return 0, false
	}
	if isSizeUnit(t[i:]) {
		return tokSize, true
	}
	// Duration: (digits unit)+.
	for k := 0; k < len(t); {
		d := k
		for k < len(t) && isDigit(t[k]) {
			k++
		}
		if k == d {
			return 0, false
		}
		u := k
		for k < len(t) && !isDigit(t[k]) {
			k++
		}
		if !isDurationUnit(t[u:k]) {
			return 0, false
		}
	}
	return tokDuration, true
}

func isExponent(s string) bool {
	if len(s) < 2 || (s[0] != 'e' && s[0] != 'E') {
		return false
	}
	s = s[1:]
	if s[0] == '+' || s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func numberHint(t string) string {
	i := 0
	for i < len(t) && isDigit(t[i]) {
		i++
	}
	if i < len(t) && t[i] == '.' {
		j := i + 1
		for j < len(t) && isDigit(t[j]) {
			j++
		}
		if j < len(t) && isDurationUnit(strings.TrimRight(t[j:], "0123456789")) {
			return "durations take whole numbers: use a smaller unit, e.g. 1500ms"
		}
	}
	return "write a number (42, 4.2), a duration (250ms, 1m30s; units ns us ms s m h d) or a size (1MiB; units B KB MB GB TB KiB MiB GiB TiB)"
}

// str lexes a double-quoted string; it may not span lines.
func (s *scanner) str() {
	src := s.src
	start := s.off
	i := start + 1
	for i < len(src) {
		switch src[i] {
		case '\\':
			// An escape never takes the line break: the string would
			// span lines.
			if i+1 < len(src) && src[i+1] != '\n' {
				i += 2
				continue
			}
		case '"':
			s.emitText(tokString, i+1)
			return
		case '\n':
			s.unterminatedString(start, i)
			return
		}
		i++
	}
	s.unterminatedString(start, len(src))
}

func (s *scanner) unterminatedString(start, end int) {
	if end > len(s.src) {
		end = len(s.src)
	}
	s.errorf(lang.SyntaxError, start, start+1, "unterminated string: missing closing \"")
	// Recover with a closed string so parsing can go on.
	s.emit(tokString, end, string(s.src[start:end])+`"`)
}

func (s *scanner) rawString() {
	start := s.off
	i := bytes.IndexByte(s.src[start+1:], '`')
	if i < 0 {
		s.errorf(lang.SyntaxError, start, start+1, "unterminated raw string: missing closing `")
		s.emit(tokRawString, len(s.src), string(s.src[start:])+"`")
		return
	}
	s.emitText(tokRawString, start+1+i+1)
}

// expr lexes the raw expression that follows the keyword or ":=" at kw.
func (s *scanner) expr(kw int, what string) {
	src := s.src
	// Skip horizontal space; it becomes a whitespace token.
	i := s.off
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	if i > s.off {
		s.emitText(tokWhitespace, i)
	}
	start := s.off
	end := s.scanExpr(start)
	// Trim trailing space.
	for end > start && isSpace(src[end-1]) {
		end--
	}
	if end == start {
		kwEnd := kw + len(what)
		s.errorf(lang.SyntaxError, kw, kwEnd, "expected an expression after %q", what)
	}
	s.emitText(tokExpr, end)
}

type openBracket struct {
	c   byte
	off int
}

func closerOf(c byte) byte {
	switch c {
	case '(':
		return ')'
	case '[':
		return ']'
	}
	return '}'
}

// scanExpr returns the end of the expression starting at start. It
// reports an unclosed bracket at the bracket itself.
func (s *scanner) scanExpr(start int) int {
	src := s.src
	var stack []openBracket
	indent := lineIndent(src, start)
	unclosed := func() {
		top := stack[len(stack)-1]
		s.errorf(lang.UnclosedBracket, top.off, top.off+1, "unclosed %q: missing %q", string(top.c), string(closerOf(top.c)))
	}
	i := start
	for i < len(src) {
		c := src[i]
		switch c {
		case '\n':
			if len(stack) == 0 {
				return i
			}
			if next := nextLineStart(src, i+1); next >= 0 && startsItem(src, next, lineIndent(src, next) <= indent, stack[len(stack)-1].c) {
				unclosed()
				return i
			}
		case '/':
			if i+1 < len(src) && src[i+1] == '/' {
				if len(stack) == 0 {
					return i
				}
				for i < len(src) && src[i] != '\n' {
					i++
				}
				continue
			}
			if i+1 < len(src) && src[i+1] == '*' {
				j := bytes.Index(src[i+2:], []byte("*/"))
				if j < 0 {
					if len(stack) == 0 {
						return i // the lexer reports it as a comment
					}
					s.errorf(lang.SyntaxError, i, i+2, "unterminated comment: \"/*\" is never closed with \"*/\"")
					return len(src)
				}
				end := i + 2 + j + 2
				if len(stack) == 0 && restOfLineBlank(src, end) {
					return i // a trailing comment, not part of the expression
				}
				i = end
				continue
			}
		case '\'', '"', '`':
			j, ok := skipQuoted(src, i)
			if !ok {
				s.errorf(lang.SyntaxError, i, i+1, "unterminated string in expression: missing closing %s", string(c))
				if c == '`' {
					return len(src)
				}
				// The string runs to the end of the line.
				if len(stack) > 0 {
					stack = stack[:0]
				}
				return j
			}
			i = j
			continue
		case '(', '[', '{':
			stack = append(stack, openBracket{c, i})
		case ')', ']', '}':
			if len(stack) == 0 {
				return i
			}
			top := stack[len(stack)-1]
			if closerOf(top.c) != c {
				unclosed()
				return i
			}
			stack = stack[:len(stack)-1]
		}
		i++
	}
	if len(stack) > 0 {
		unclosed()
	}
	return len(src)
}

// skipQuoted returns the offset just past the quoted string starting at i.
// Single- and double-quoted strings end at the line; backquoted ones may
// span lines. ok is false if the string is unterminated; the offset is
// then the end of the line (or file).
func skipQuoted(src []byte, i int) (int, bool) {
	q := src[i]
	j := i + 1
	for j < len(src) {
		c := src[j]
		if q != '`' {
			if c == '\\' && j+1 < len(src) && src[j+1] != '\n' {
				j += 2
				continue
			}
			if c == '\n' {
				return j, false
			}
		}
		if c == q {
			return j + 1, true
		}
		j++
	}
	return len(src), false
}

// lineIndent returns the width in bytes of the leading blanks of the line
// holding offset off.
func lineIndent(src []byte, off int) int {
	ls := off
	for ls > 0 && src[ls-1] != '\n' {
		ls--
	}
	n := 0
	for ls+n < len(src) && (src[ls+n] == ' ' || src[ls+n] == '\t') {
		n++
	}
	return n
}

// nextLineStart returns the offset of the first non-blank character of the
// first non-blank line at or after off, or -1.
func nextLineStart(src []byte, off int) int {
	for off < len(src) {
		c := src[off]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			off++
			continue
		}
		return off
	}
	return -1
}

// itemKeywords start a body item or a declaration when followed by a name
// (or, for the ones marked true, by a string).
var itemKeywords = map[string]bool{
	"where": false, "case": false, "else": false, "drop": false, "keep": false,
	"source": false, "transform": false, "sink": false, "def": false, "schema": false,
	"pipeline": false, "given": false, "expect": false, "param": false,
	"test": true, "import": true,
}

// startsItem reports whether the line starting at off looks like the start
// of a new body item or declaration rather than the continuation of an
// expression inside brackets: `name =`, `name :=`, `a.b =`, or (when
// dedented) a keyword-led item, a flow or a closing brace that does not
// match the innermost open bracket.
func startsItem(src []byte, off int, dedented bool, top byte) bool {
	c := src[off]
	if c == '}' {
		return dedented && top != '{'
	}
	if !isIdentStart(c) {
		return false
	}
	j := off
	for j < len(src) && isIdentChar(src[j]) {
		j++
	}
	word := string(src[off:j])
	// Dotted path.
	k := j
	for k+1 < len(src) && src[k] == '.' && isIdentStart(src[k+1]) {
		k++
		for k < len(src) && isIdentChar(src[k]) {
			k++
		}
	}
	m := k
	for m < len(src) && (src[m] == ' ' || src[m] == '\t') {
		m++
	}
	if m < len(src) {
		switch {
		case src[m] == '=' && (m+1 >= len(src) || src[m+1] != '='):
			return word != "let"
		case src[m] == ':' && m+1 < len(src) && src[m+1] == '=':
			return true
		case src[m] == '-' && m+1 < len(src) && src[m+1] == '>':
			return dedented
		}
	}
	if !dedented || k != j {
		return false
	}
	str, ok := itemKeywords[word]
	if !ok || m == j || m >= len(src) {
		return false
	}
	if str {
		return src[m] == '"'
	}
	return isIdentStart(src[m]) || (word == "pipeline" && src[m] == '{')
}

// restOfLineBlank reports whether, after off, the expression has nothing
// more on its line: only blanks and comments up to the end of the line or
// a closing bracket (which ends the expression at depth 0).
func restOfLineBlank(src []byte, off int) bool {
	for off < len(src) && src[off] != '\n' {
		switch src[off] {
		case ' ', '\t', '\r':
			off++
		case '/':
			if off+1 < len(src) && src[off+1] == '/' {
				return true
			}
			if off+1 < len(src) && src[off+1] == '*' {
				j := bytes.Index(src[off+2:], []byte("*/"))
				if j < 0 {
					return true
				}
				off += 2 + j + 2
				continue
			}
			return false
		case ')', ']', '}':
			return true
		default:
			return false
		}
	}
	return true
}
