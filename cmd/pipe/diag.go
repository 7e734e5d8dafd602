package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"pipe.dev/pipe/lang"
)

// diagFormats are the values of --format for diagnostics.
var diagFormats = []string{"text", "json", "github"}

func validFormat(f string, allowed []string) bool {
	for _, a := range allowed {
		if a == f {
			return true
		}
	}
	return false
}

// sources caches file contents for caret snippets.
type sources map[string][]byte

func (s sources) line(file string, n int) string {
	src, ok := s[file]
	if !ok {
		b, err := os.ReadFile(file)
		if err != nil {
			s[file] = nil
			return ""
		}
		s[file], src = b, b
	}
	if src == nil {
		return ""
	}
	return lang.NewLines(file, src).Line(n)
}

// printDiagnostics writes ds in the given format.
func printDiagnostics(w io.Writer, format string, ds lang.Diagnostics, srcs sources) error {
	switch format {
	case "json":
		return lang.WriteJSON(w, ds)
	case "github":
		for _, d := range ds {
			level := "error"
			if d.Severity == lang.Warning {
				level = "warning"
			}
			msg := d.Message
			if d.Detail != "" {
				msg += " (" + d.Detail + ")"
			}
			fmt.Fprintf(w, "::%s file=%s,line=%d,col=%d,endLine=%d,endColumn=%d,title=%s::%s\n",
				level, ghEscapeProp(d.Span.File), d.Span.Start.Line, d.Span.Start.Column,
				d.Span.End.Line, d.Span.End.Column, d.Code, ghEscape(msg))
		}
		return nil
	default:
		for _, d := range ds {
			fmt.Fprintln(w, d.String())
			if srcs == nil || !d.Span.IsValid() {
				continue
			}
			if text := srcs.line(d.Span.File, d.Span.Start.Line); text != "" {
				fmt.Fprintf(w, "    %s\n    %s\n", strings.ReplaceAll(text, "\t", " "), caret(text, d.Span))
			}
			for _, r := range d.Related {
				fmt.Fprintf(w, "    %s: %s\n", r.Span, r.Message)
			}
		}
		return nil
	}
}

// caret underlines the span on its first line.
func caret(text string, s lang.Span) string {
	runes := []rune(text)
	start := min(max(s.Start.Column-1, 0), len(runes))
	width := 1
	if s.End.Line == s.Start.Line && s.End.Column > s.Start.Column {
		width = s.End.Column - s.Start.Column
	}
	width = max(min(width, len(runes)-start), 1)
	return strings.Repeat(" ", start) + strings.Repeat("^", width)
}

func ghEscape(s string) string {
	s = strings.ReplaceAll(s, "%", "%25")
	s = strings.ReplaceAll(s, "\r", "%0D")
	return strings.ReplaceAll(s, "\n", "%0A")
}

func ghEscapeProp(s string) string {
	s = ghEscape(s)
	s = strings.ReplaceAll(s, ":", "%3A")
	return strings.ReplaceAll(s, ",", "%2C")
}
