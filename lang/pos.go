package lang

import (
	"fmt"
	"sort"
	"unicode/utf8"
)

// Pos is a position in a source file.
type Pos struct {
	Offset int `json:"offset"` // byte offset, from 0
	Line   int `json:"line"`   // line, from 1
	Column int `json:"column"` // column in runes, from 1
}

// IsValid reports whether p was set (line numbers start at 1).
func (p Pos) IsValid() bool { return p.Line > 0 }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Column) }

// Span is a range of a source file; End is exclusive.
type Span struct {
	File  string `json:"file"`
	Start Pos    `json:"start"`
	End   Pos    `json:"end"`
}

// IsValid reports whether s was set.
func (s Span) IsValid() bool { return s.Start.IsValid() }

// String formats s as file:line:col.
func (s Span) String() string {
	if !s.IsValid() {
		if s.File == "" {
			return "-"
		}
		return s.File
	}
	return fmt.Sprintf("%s:%d:%d", s.File, s.Start.Line, s.Start.Column)
}

// Lines is a file's line table: it turns byte offsets into positions.
type Lines struct {
	File  string
	src   []byte
	start []int // byte offset of the start of each line
}

// NewLines builds the line table of src.
func NewLines(file string, src []byte) *Lines {
	l := &Lines{File: file, src: src, start: []int{0}}
	for i, c := range src {
		if c == '\n' {
			l.start = append(l.start, i+1)
		}
	}
	return l
}

// Pos returns the position of byte offset off (clamped to the file).
func (l *Lines) Pos(off int) Pos {
	if off < 0 {
		off = 0
	}
	if off > len(l.src) {
		off = len(l.src)
	}
	line := sort.Search(len(l.start), func(i int) bool { return l.start[i] > off }) - 1
	col := utf8.RuneCount(l.src[l.start[line]:off]) + 1
	return Pos{Offset: off, Line: line + 1, Column: col}
}

// Span returns the span of bytes [start, end).
func (l *Lines) Span(start, end int) Span {
	return Span{File: l.File, Start: l.Pos(start), End: l.Pos(end)}
}

// Line returns the text of line n (from 1) without its newline.
func (l *Lines) Line(n int) string {
	if n < 1 || n > len(l.start) {
		return ""
	}
	s := l.start[n-1]
	e := len(l.src)
	if n < len(l.start) {
		e = l.start[n] - 1
	}
	if e > s && l.src[e-1] == '\r' {
		e--
	}
	return string(l.src[s:e])
}
