package lang

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Severity says whether a diagnostic fails a check. The zero value is invalid.
type Severity int

const (
	Error   Severity = 1
	Warning Severity = 2
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "invalid"
}

// Related is a secondary span of a diagnostic ("first defined here").
type Related struct {
	Span    Span   `json:"span"`
	Message string `json:"message"`
}

// Diagnostic is one finding about a pipe source.
type Diagnostic struct {
	Severity Severity  `json:"-"`
	Code     Code      `json:"-"`
	Span     Span      `json:"-"`       // tight subject of the finding
	Message  string    `json:"message"` // lower-case, no final period
	Detail   string    `json:"detail,omitempty"`
	Related  []Related `json:"related,omitempty"`
}

// Errorf returns an error diagnostic.
func Errorf(code Code, span Span, format string, args ...any) Diagnostic {
	return Diagnostic{Severity: Error, Code: code, Span: span, Message: fmt.Sprintf(format, args...)}
}

// Warningf returns a warning diagnostic.
func Warningf(code Code, span Span, format string, args ...any) Diagnostic {
	return Diagnostic{Severity: Warning, Code: code, Span: span, Message: fmt.Sprintf(format, args...)}
}

// String formats d as "file:line:col: error PIPE104: message".
func (d Diagnostic) String() string {
	s := fmt.Sprintf("%s: %s %s: %s", d.Span, d.Severity, d.Code, d.Message)
	if d.Detail != "" {
		s += " (" + d.Detail + ")"
	}
	return s
}

// Diagnostics is a list of findings. It implements error.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic has severity Error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns only the error diagnostics.
func (ds Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == Error {
			out = append(out, d)
		}
	}
	return out
}

// Sort orders ds by file, offset, then code, so output is deterministic.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.Span.File, b.Span.File),
			cmp.Compare(a.Span.Start.Offset, b.Span.Start.Offset),
			cmp.Compare(a.Code, b.Code),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// Err returns ds as an error if it holds any error diagnostic, else nil.
func (ds Diagnostics) Err() error {
	if ds.HasErrors() {
		return ds
	}
	return nil
}

func (ds Diagnostics) Error() string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}
