package parser

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
)

// providers are the known ${provider:...} reference kinds.
var providers = map[string]bool{"env": true, "file": true, "param": true}

// decodeString splits the raw double-quoted literal raw, which starts at
// pos, into text and ${...} references. Escapes: \\ \" \n \r \t \$ \uXXXX.
// A string never spans lines, so columns advance rune by rune.
func decodeString(name string, raw string, pos lexer.Position) ([]ast.StringPart, lang.Diagnostics) {
	var (
		parts []ast.StringPart
		diags lang.Diagnostics
		text  strings.Builder
	)
	// posOf returns the position of byte i of raw.
	posOf := func(i int) lang.Pos {
		if i > len(raw) {
			i = len(raw)
		}
		return lang.Pos{Offset: pos.Offset + i, Line: pos.Line, Column: pos.Column + utf8.RuneCountInString(raw[:i])}
	}
	spanOf := func(i, j int) lang.Span { return lang.Span{File: name, Start: posOf(i), End: posOf(j)} }
	flush := func() {
		if text.Len() > 0 {
			parts = append(parts, ast.StringPart{Text: text.String()})
			text.Reset()
		}
	}
	if len(raw) < 2 || raw[0] != '"' {
		return nil, nil
	}
	body := len(raw) - 1 // index of the closing quote
	for i := 1; i < body; {
		c := raw[i]
		switch {
		case c == '\\':
			if i+1 >= body {
				diags = append(diags, lang.Errorf(lang.BadLiteral, spanOf(i, i+1), "unfinished escape sequence"))
				i++
				continue
			}
			e := raw[i+1]
			switch e {
			case '\\', '"', '$':
				text.WriteByte(e)
			case 'n':
				text.WriteByte('\n')
			case 'r':
				text.WriteByte('\r')
			case 't':
				text.WriteByte('\t')
			case 'u':
				if i+6 <= body {
					if r, err := strconv.ParseUint(raw[i+2:i+6], 16, 32); err == nil && utf8.ValidRune(rune(r)) {
						text.WriteRune(rune(r))
						i += 6
						continue
					}
				}
				end := min(i+6, body)
				diags = append(diags, lang.Errorf(lang.BadLiteral, spanOf(i, end), "malformed escape %q: write \\u followed by 4 hex digits", raw[i:end]))
				i += 2
				continue
			default:
				_, w := utf8.DecodeRuneInString(raw[i+1:])
				d := lang.Errorf(lang.BadLiteral, spanOf(i, i+1+w), "unknown escape sequence %q", raw[i:i+1+w])
				d.Detail = `use \\ \" \n \r \t \$ or \uXXXX`
				diags = append(diags, d)
				i += 1 + w
				continue
			}
			i += 2
		case c == '$' && i+1 < body && raw[i+1] == '{':
			end := strings.IndexByte(raw[i:body], '}')
			if end < 0 {
				diags = append(diags, lang.Errorf(lang.BadInterpolation, spanOf(i, i+2), "unterminated reference: \"${\" is never closed with \"}\""))
				text.WriteString(raw[i:body])
				i = body
				continue
			}
			end += i + 1 // just past "}"
			ref, d := parseInterp(raw[i+2:end-1], spanOf(i, end))
			if d != nil {
				diags = append(diags, *d)
				text.WriteString(raw[i:end])
			} else {
				flush()
				parts = append(parts, ast.StringPart{Interp: ref})
			}
			i = end
		default:
			_, w := utf8.DecodeRuneInString(raw[i:])
			text.WriteString(raw[i : i+w])
			i += w
		}
	}
	flush()
	if parts == nil {
		parts = []ast.StringPart{{Text: ""}}
	}
	return parts, diags
}

// parseInterp parses the inside of ${...}.
func parseInterp(in string, span lang.Span) (*ast.Interp, *lang.Diagnostic) {
	bad := func(format string, args ...any) (*ast.Interp, *lang.Diagnostic) {
		d := lang.Errorf(lang.BadInterpolation, span, format, args...)
		d.Detail = "write ${env:NAME}, ${file:path:key} or ${param:name}"
		return nil, &d
	}
	provider, rest, ok := strings.Cut(in, ":")
	if !ok {
		return bad("malformed reference \"${%s}\": missing \":\" after the provider", in)
	}
	if !providers[provider] {
		return bad("unknown provider %q in \"${%s}\": use env, file or param", provider, in)
	}
	ref := &ast.Interp{Span: span, Provider: provider}
	switch provider {
	case "env", "param":
		if !isName(rest) {
			return bad("malformed reference \"${%s}\": %q is not a valid %s name", in, rest, provider)
		}
		ref.Key = rest
	case "file":
		i := strings.LastIndexByte(rest, ':')
		if i <= 0 || i == len(rest)-1 {
			return bad("malformed reference \"${%s}\": a file reference is ${file:path:key}", in)
		}
		ref.Path, ref.Key = rest[:i], rest[i+1:]
		if strings.TrimSpace(ref.Path) != ref.Path || !isKey(ref.Key) {
			return bad("malformed reference \"${%s}\": a file reference is ${file:path:key}", in)
		}
	}
	return ref, nil
}

func isName(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

func isKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isIdentChar(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}
