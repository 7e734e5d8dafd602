package format

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/parser"
)

// shortList is the longest one-line rendering of a list or map that is
// put on one line even when the source spread it over several.
const shortList = 60

// Source parses src and formats it. On a syntax error it returns nil and
// the diagnostics; the source is never formatted half-way.
func Source(name string, src []byte) ([]byte, lang.Diagnostics) {
	f, diags := parser.ParseFile(name, src)
	if diags.HasErrors() || f == nil {
		return nil, diags
	}
	return Format(f), diags
}

// Format prints f in canonical form. It uses the positions in f to keep
// comments, blank lines between items (at most one) and the one-line or
// multi-line layout of lists and maps. f should come from a parse without
// errors; a partial tree is printed as far as it goes.
func Format(f *ast.File) (out []byte) {
	if f == nil {
		return nil
	}
	p := &printer{comments: f.Comments}
	defer func() {
		// A partial tree may lack nodes the printer needs: keep what was
		// printed rather than fail.
		if r := recover(); r != nil {
			out = p.buf.Bytes()
		}
	}()
	p.file(f)
	out = p.buf.Bytes()
	out = bytes.TrimLeft(out, "\n")
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return out
}

type printer struct {
	buf      bytes.Buffer
	indent   int
	comments []*ast.Comment
	next     int  // index of the next comment to print
	lastLine int  // source line of the last thing printed, 0 before any
	atStart  bool // at the start of a body: no blank line
}

// --- low-level output -----------------------------------------------------

func (p *printer) write(s string) { p.buf.WriteString(s) }

// newline ends the current line, trimming trailing blanks.
func (p *printer) newline() {
	b := p.buf.Bytes()
	n := len(b)
	for n > 0 && (b[n-1] == ' ' || b[n-1] == '\t') {
		n--
	}
	p.buf.Truncate(n)
	p.buf.WriteByte('\n')
}

func (p *printer) startLine() {
	for i := 0; i < p.indent; i++ {
		p.buf.WriteString("  ")
	}
}

// column returns the 1-based rune column where the next write lands.
func (p *printer) column() int {
	b := p.buf.Bytes()
	i := bytes.LastIndexByte(b, '\n')
	return utf8.RuneCount(b[i+1:]) + 1
}

// --- comments and blank lines ---------------------------------------------

// gap writes a blank line if the source had one before line.
func (p *printer) gap(line int) {
	if !p.atStart && p.lastLine > 0 && line > p.lastLine+1 {
		p.newline()
	}
	p.atStart = false
}

// leading prints, each on its own line, the comments that start before
// offset off, then leaves the printer ready for an item starting at line.
func (p *printer) leading(off, line int) {
	for p.next < len(p.comments) && p.comments[p.next].Pos.Offset < off {
		c := p.comments[p.next]
		p.next++
		p.gap(c.Pos.Line)
		p.startLine()
		p.write(c.Text)
		p.newline()
		p.lastLine = c.EndPos.Line
	}
	if line > 0 {
		p.gap(line)
	}
}

// trailing appends to the current line the comments that start before
// limit and either lie inside the item ending at end or start on its last
// line, then ends the line.
func (p *printer) trailing(end lexer.Position, limit int) {
	if end.Line > p.lastLine {
		p.lastLine = end.Line
	}
	for p.next < len(p.comments) {
		c := p.comments[p.next]
		if c.Pos.Offset >= limit || (c.Pos.Offset >= end.Offset && c.Pos.Line != end.Line) {
			break
		}
		p.next++
		p.write(" " + c.Text)
		p.lastLine = c.EndPos.Line
		if strings.HasPrefix(c.Text, "//") {
			// Nothing may follow a line comment on this line; later
			// comments that belong here join it.
			for p.next < len(p.comments) {
				c2 := p.comments[p.next]
				if c2.Pos.Offset >= limit || (c2.Pos.Offset >= end.Offset && c2.Pos.Line != end.Line) {
					break
				}
				p.next++
				p.write(" " + strings.TrimPrefix(strings.TrimPrefix(c2.Text, "//"), " "))
				p.lastLine = c2.EndPos.Line
			}
		}
	}
	p.newline()
}

// hasComment reports whether a comment starts in [from, to).
func (p *printer) hasComment(from, to int) bool {
	for _, c := range p.comments[p.next:] {
		if c.Pos.Offset >= to {
			return false
		}
		if c.Pos.Offset >= from {
			return true
		}
	}
	return false
}

// hasOwnLineComment reports whether a comment starting on a line after
// prevEnd's line lies before offset to. A comment trailing the previous
// line does not break an aligned run; one on its own line does.
func (p *printer) hasOwnLineComment(prevEnd lexer.Position, to int) bool {
	for _, c := range p.comments[p.next:] {
		if c.Pos.Offset >= to {
			return false
		}
		if c.Pos.Offset >= prevEnd.Offset && c.Pos.Line > prevEnd.Line {
			return true
		}
	}
	return false
}

const maxOffset = int(^uint(0) >> 1)

// --- file and declarations ------------------------------------------------

func (p *printer) file(f *ast.File) {
	for i, it := range f.Items {
		limit := maxOffset
		if i+1 < len(f.Items) {
			limit = f.Items[i+1].Pos.Offset
		}
		p.leading(it.Pos.Offset, it.Pos.Line)
		p.topItem(it, limit)
	}
	p.leading(maxOffset, 0)
}

func (p *printer) topItem(it *ast.TopItem, limit int) {
	p.startLine()
	switch {
	case it.Pipeline != nil:
		d := it.Pipeline
		p.write("pipeline")
		if d.Name != "" {
			p.write(" " + d.Name)
		}
		p.body(d.Items, lineOnly(d.Pos), d.EndPos, limit)
	case it.Import != nil:
		d := it.Import
		p.write("import " + str(d.Path))
		if d.Alias != nil {
			p.write(" as " + d.Alias.Name)
		}
		p.trailing(d.EndPos, limit)
	case it.Schema != nil:
		d := it.Schema
		p.write("schema " + d.Name.Name)
		if d.From != nil {
			p.write(" from " + str(d.From))
			p.trailing(d.EndPos, limit)
			break
		}
		p.fields(d.Fields, lineOnly(d.Pos), d.EndPos, limit)
	case it.Def != nil:
		d := it.Def
		p.write("def " + string(d.Kind) + " " + d.Name.Name + "(")
		for i, prm := range d.Params {
			if i > 0 {
				p.write(", ")
			}
			p.write(prm.Name.Name + ": " + typ(prm.Type))
			if prm.Default != nil {
				p.write(" = " + flat(prm.Default))
			}
		}
		p.write("): " + refOrCall(d.Component))
		p.optBody(d.Body, d.Items, endOf(d.Component, d.Pos), d.EndPos, limit)
	case it.Stage != nil:
		d := it.Stage
		p.write(string(d.Kind) + " " + d.Name.Name + ": " + refOrCall(d.Component))
		p.optBody(d.Body, d.Items, endOf(d.Component, d.Pos), d.EndPos, limit)
	case it.Param != nil:
		d := it.Param
		p.write("param " + d.Param.Name.Name + ": " + typ(d.Param.Type))
		if d.Param.Default != nil {
			p.write(" = " + flat(d.Param.Default))
		}
		p.trailing(d.EndPos, limit)
	case it.Test != nil:
		d := it.Test
		p.write("test " + str(d.Name))
		p.testBody(d.Items, endOfString(d.Name, d.Pos), d.EndPos, limit)
	case it.Flow != nil:
		d := it.Flow
		for i, n := range d.Nodes {
			if i > 0 {
				p.write(" -> ")
			}
			p.write(flowNode(n))
		}
		p.trailing(d.EndPos, limit)
	default:
		p.newline()
	}
}

// open writes " {" and the comments of the header (those inside it or on
// its last line), and prepares the body. header is the end of the header's
// last token before "{"; firstOff is the offset of the first item (or of
// "}").
func (p *printer) open(header lexer.Position, firstOff int) {
	p.write(" {")
	p.trailing(header, firstOff)
	p.lastLine = max(p.lastLine, header.Line)
	p.indent++
	p.atStart = true
}

// close prints the comments left before "}" (at closeOff) and the "}".
func (p *printer) close(closeOff int, end lexer.Position, limit int) {
	p.leading(closeOff, 0)
	p.indent--
	p.startLine()
	p.write("}")
	p.trailing(end, limit)
}

// closeOffset returns the offset of the "}" that ends a node ending at end.
// lineOnly marks the end of a header known only by its line: comments on
// that line trail it.
func lineOnly(pos lexer.Position) lexer.Position {
	return lexer.Position{Line: pos.Line, Offset: -1}
}

func closeOffset(end lexer.Position) int {
	if end.Line == 0 {
		return maxOffset
	}
	return end.Offset - 1
}

// empty reports whether a body holds nothing to print: no items and no
// comment before its "}".
func (p *printer) empty(n int, closeOff int) bool {
	return n == 0 && (p.next >= len(p.comments) || p.comments[p.next].Pos.Offset >= closeOff)
}

// spans gives the positions of the i-th item of a body, list or map.
type spans func(i int) (start, end lexer.Position)

// first returns the offset of the first of n items, or closeOff when n is 0.
func (at spans) first(n, closeOff int) int {
	if n == 0 {
		return closeOff
	}
	start, _ := at(0)
	return start.Offset
}

// openBody prints the " {" of a body of n items after header and returns
// the offset of its "}"; an empty body it prints whole, " {}", and
// returns false.
func (p *printer) openBody(n int, at spans, header, end lexer.Position, limit int) (int, bool) {
	closeOff := closeOffset(end)
	if p.empty(n, closeOff) {
		p.write(" {}")
		p.trailing(end, limit)
		return closeOff, false
	}
	p.open(header, at.first(n, closeOff))
	return closeOff, true
}

// eachLine prints n items one a line, each after the comments before it
// (and, with gaps, the blank line it had before it): item prints the i-th,
// given the offset where the next starts (closeOff after the last).
func (p *printer) eachLine(n, closeOff int, at spans, gaps bool, item func(i, next int)) {
	for i := range n {
		next := closeOff
		if i+1 < n {
			start, _ := at(i + 1)
			next = start.Offset
		}
		start, _ := at(i)
		line := 0
		if gaps {
			line = start.Line
		}
		p.leading(start.Offset, line)
		p.startLine()
		item(i, next)
	}
}

// --- bodies ---------------------------------------------------------------

// body prints " { items }" for a stage, def, pipeline or nested block.
func (p *printer) body(items []*ast.BodyItem, header lexer.Position, end lexer.Position, limit int) {
	at := func(i int) (lexer.Position, lexer.Position) { return items[i].Pos, items[i].EndPos }
	closeOff, ok := p.openBody(len(items), at, header, end, limit)
	if !ok {
		return
	}
	widths := p.alignBody(items)
	p.eachLine(len(items), closeOff, at, true, func(i, next int) { p.bodyItem(items[i], widths[i], next) })
	p.close(closeOff, end, limit)
}

// optBody prints the body of a stage or def that has one, " { items }",
// else ends its line.
func (p *printer) optBody(body bool, items []*ast.BodyItem, header lexer.Position, end lexer.Position, limit int) {
	if body || len(items) > 0 {
		p.body(items, header, end, limit)
		return
	}
	p.trailing(end, limit)
}

func (p *printer) bodyItem(it *ast.BodyItem, width int, limit int) {
	switch {
	case it.Where != nil:
		p.write("where ")
		p.expr(it.Where)
	case it.Case != nil:
		p.write("case " + ident(it.Case.Port) + " when ")
		p.expr(it.Case.When)
	case it.Else != nil:
		p.write("else " + ident(it.Else))
	case it.Drop != nil:
		p.write("drop " + paths(it.Drop))
	case it.Keep != nil:
		p.write("keep " + paths(it.Keep))
	case it.Member != nil:
		p.member(it.Member, width, limit)
		return
	}
	p.trailing(it.EndPos, limit)
}

func (p *printer) member(m *ast.Member, width int, limit int) {
	key := memberKey(m)
	switch {
	case m.Assign != nil:
		p.write(pad(key, width-1) + " := ")
		p.expr(m.Assign)
	case m.Value != nil:
		p.write(pad(key, width) + " = ")
		p.value(m.Value)
	default:
		p.write(key)
		p.body(m.Items, endOfPath(m.Path, m.Pos), m.EndPos, limit)
		return
	}
	p.trailing(m.EndPos, limit)
}

func memberKey(m *ast.Member) string {
	key := m.Path.String()
	if m.Type != nil {
		key += ": " + typ(m.Type)
	}
	return key
}

func pad(s string, width int) string {
	n := utf8.RuneCountInString(s)
	if n >= width {
		return s
	}
	return s + strings.Repeat(" ", width-n)
}

// alignBody returns, for each item, the width its key is padded to so that
// "=" lines up within each run of consecutive one-line attributes: no blank
// line, comment or other item between them. For ":=" lines the width
// counts the ":".
func (p *printer) alignBody(items []*ast.BodyItem) []int {
	widths := make([]int, len(items))
	keyWidth := func(it *ast.BodyItem) (int, bool) {
		m := it.Member
		if m == nil || (m.Assign == nil && m.Value == nil) {
			return 0, false
		}
		if m.Assign != nil && strings.Contains(m.Assign.Text, "\n") {
			return 0, false
		}
		if m.Value != nil && p.multiline(m.Value) {
			return 0, false
		}
		w := utf8.RuneCountInString(memberKey(m))
		if m.Assign != nil {
			w++
		}
		return w, true
	}
	alignRuns(len(items), widths, func(i int) (int, bool) { return keyWidth(items[i]) }, func(i int) (lexer.Position, lexer.Position) {
		return items[i].Pos, items[i].EndPos
	}, p)
	// Within a run, ":=" lines and "=" lines align separately when each
	// kind has several lines in a row; a lone line of one kind aligns with
	// its neighbours.
	for i := 0; i < len(items); {
		if widths[i] == 0 {
			i++
			continue
		}
		j := i
		for j < len(items) && widths[j] == widths[i] && sameRun(items, i, j) {
			j++
		}
		splitByOperator(items[i:j], widths[i:j], keyWidth)
		i = j
	}
	return widths
}

// sameRun reports whether items i..j were put in one run (consecutive
// lines); alignRuns gave them the same width.
func sameRun(items []*ast.BodyItem, i, j int) bool {
	return j == i || items[j].Pos.Line <= items[j-1].EndPos.Line+1
}

// splitByOperator splits one aligned run into groups of segments of the
// same operator; a segment of one line joins its neighbours' group.
func splitByOperator(items []*ast.BodyItem, widths []int, keyWidth func(*ast.BodyItem) (int, bool)) {
	type seg struct{ from, to int }
	var segs []seg
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && (items[j].Member.Assign != nil) == (items[i].Member.Assign != nil) {
			j++
		}
		segs = append(segs, seg{i, j})
		i = j
	}
	for s := 0; s < len(segs); {
		t := s + 1
		for t < len(segs) && (segs[t].to-segs[t].from == 1 || segs[t-1].to-segs[t-1].from == 1) {
			t++
		}
		w := 0
		for k := segs[s].from; k < segs[t-1].to; k++ {
			if kw, _ := keyWidth(items[k]); kw > w {
				w = kw
			}
		}
		for k := segs[s].from; k < segs[t-1].to; k++ {
			widths[k] = w
		}
		s = t
	}
}

// alignRuns fills widths with the maximum key width of each run of
// alignable items that follow each other on consecutive lines with no
// comment between them.
func alignRuns(n int, widths []int, key func(int) (int, bool), span spans, p *printer) {
	for i := 0; i < n; {
		w, ok := key(i)
		if !ok {
			i++
			continue
		}
		j := i + 1
		for j < n {
			if _, ok := key(j); !ok {
				break
			}
			_, prevEnd := span(j - 1)
			start, _ := span(j)
			if start.Line > prevEnd.Line+1 || p.hasOwnLineComment(prevEnd, start.Offset) {
				break
			}
			j++
		}
		for k := i; k < j; k++ {
			if kw, _ := key(k); kw > w {
				w = kw
			}
		}
		for k := i; k < j; k++ {
			widths[k] = w
		}
		i = j
	}
}

// --- schemas and types ----------------------------------------------------

func (p *printer) fields(fields []*ast.Field, header lexer.Position, end lexer.Position, limit int) {
	closeOff, ok := p.openBody(len(fields), fieldSpans(fields), header, end, limit)
	if !ok {
		return
	}
	p.fieldList(fields, closeOff)
	p.close(closeOff, end, limit)
}

func fieldSpans(fields []*ast.Field) spans {
	return func(i int) (lexer.Position, lexer.Position) { return fields[i].Pos, fields[i].EndPos }
}

// fieldsInner prints the fields of a multi-line inline record type; the
// caller writes the braces.
func (p *printer) fieldsInner(fields []*ast.Field, headerLine int, closeOff int) {
	p.trailing(lexer.Position{Line: headerLine, Offset: -1}, fieldSpans(fields).first(len(fields), closeOff))
	p.indent++
	p.atStart = true
	p.fieldList(fields, closeOff)
	p.leading(closeOff, 0)
	p.indent--
	p.startLine()
}

// fieldList prints fields one a line, their types aligned in runs; a
// multi-line inline record type nests.
func (p *printer) fieldList(fields []*ast.Field, closeOff int) {
	widths := make([]int, len(fields))
	alignRuns(len(fields), widths, func(i int) (int, bool) {
		if multiRecord(fields[i].Type) {
			return 0, false
		}
		return utf8.RuneCountInString(fields[i].Name.Name) + 1, true
	}, fieldSpans(fields), p)
	p.eachLine(len(fields), closeOff, fieldSpans(fields), true, func(i, next int) {
		fd := fields[i]
		p.write(pad(fd.Name.Name+":", widths[i]) + " ")
		if multiRecord(fd.Type) {
			p.write("{")
			p.fieldsInner(fd.Type.Record, fd.Type.Pos.Line, closeOffset(fd.Type.EndPos))
			p.write("}")
			if fd.Type.Optional {
				p.write("?")
			}
		} else {
			p.write(typ(fd.Type))
		}
		p.trailing(fd.EndPos, next)
	})
}

// multiRecord reports whether t is an inline record type that was written
// over several lines and is printed so.
func multiRecord(t *ast.Type) bool {
	return t != nil && t.Record != nil && t.Pos.Line > 0 && t.EndPos.Line > t.Pos.Line
}

func typ(t *ast.Type) string {
	if t == nil {
		return ""
	}
	var s string
	switch {
	case t.List != nil:
		s = "list<" + typ(t.List) + ">"
	case t.MapKey != nil:
		s = "map<" + typ(t.MapKey) + ", " + typ(t.MapValue) + ">"
	case t.Name == nil:
		// A record type; "{}" has no fields.
		parts := make([]string, len(t.Record))
		for i, f := range t.Record {
			parts[i] = f.Name.Name + ": " + typ(f.Type)
		}
		if len(parts) == 0 {
			s = "{}"
		} else {
			s = "{ " + strings.Join(parts, ", ") + " }"
		}
	default:
		s = t.Name.String()
	}
	if t.Optional {
		s += "?"
	}
	return s
}

// --- tests ----------------------------------------------------------------

func (p *printer) testBody(items []*ast.TestItem, header lexer.Position, end lexer.Position, limit int) {
	at := func(i int) (lexer.Position, lexer.Position) { return items[i].Pos, items[i].EndPos }
	closeOff, ok := p.openBody(len(items), at, header, end, limit)
	if !ok {
		return
	}
	widths := make([]int, len(items))
	alignRuns(len(items), widths, func(i int) (int, bool) {
		m := items[i].Member
		if m == nil || m.Value == nil || p.multiline(m.Value) {
			if m != nil && m.Assign != nil && !strings.Contains(m.Assign.Text, "\n") {
				return utf8.RuneCountInString(memberKey(m)) + 1, true
			}
			return 0, false
		}
		return utf8.RuneCountInString(memberKey(m)), true
	}, at, p)
	p.eachLine(len(items), closeOff, at, true, func(i, next int) {
		it := items[i]
		switch {
		case it.Given != nil:
			p.write("given " + ident(it.Given.Source) + " ")
			if it.Given.Records != nil {
				p.list(it.Given.Records)
			}
		case it.Expect != nil:
			e := it.Expect
			p.write("expect " + portRef(e.Target))
			switch {
			case e.Records != nil:
				p.write(" ")
				p.list(e.Records)
			case e.Count != nil:
				p.write(" count " + number(e.Count))
			case e.Empty:
				p.write(" empty")
			case e.Where != nil:
				p.write(" where ")
				p.expr(e.Where)
			}
		case it.Member != nil:
			p.member(it.Member, widths[i], next)
			return
		}
		p.trailing(it.EndPos, next)
	})
	p.close(closeOff, end, limit)
}

// --- expressions ----------------------------------------------------------

// expr writes an expression verbatim. Continuation lines of a multi-line
// expression move by as many columns as its first line moved, so that
// their alignment with it is kept (unless the text holds a raw string,
// whose content must not change).
func (p *printer) expr(e *ast.Expr) {
	if e == nil {
		return
	}
	text := e.Text
	if !strings.Contains(text, "\n") || strings.Contains(text, "`") || e.Pos.Line == 0 {
		p.write(text)
		return
	}
	delta := p.column() - e.Pos.Column
	lines := strings.Split(text, "\n")
	for i := 1; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			lines[i] = ""
			continue
		}
		switch {
		case delta > 0:
			l = strings.Repeat(" ", delta) + l
		case delta < 0:
			n := 0
			for n < -delta && n < len(l) && l[n] == ' ' {
				n++
			}
			l = l[n:]
		}
		lines[i] = l
	}
	p.write(strings.Join(lines, "\n"))
}

// --- values ---------------------------------------------------------------

// multiline reports whether v is printed over several lines.
func (p *printer) multiline(v *ast.Value) bool {
	switch {
	case v == nil:
		return false
	case v.List != nil:
		return !p.listOneLine(v.List)
	case v.Map != nil:
		return !p.mapOneLine(v.Map)
	case v.Raw != nil:
		return strings.Contains(*v.Raw, "\n")
	}
	return false
}

func (p *printer) listOneLine(l *ast.List) bool {
	if p.hasComment(l.Pos.Offset, l.EndPos.Offset) && l.EndPos.Line > 0 {
		return false
	}
	for _, it := range l.Items {
		if p.multiline(it) {
			return false
		}
	}
	return l.Pos.Line == l.EndPos.Line || len(flatList(l)) <= shortList
}

func (p *printer) mapOneLine(m *ast.Map) bool {
	if p.hasComment(m.Pos.Offset, m.EndPos.Offset) && m.EndPos.Line > 0 {
		return false
	}
	for _, e := range m.Entries {
		if p.multiline(e.Value) {
			return false
		}
	}
	return m.Pos.Line == m.EndPos.Line || len(flatMap(m)) <= shortList
}

// value writes v; lists and maps may span lines.
func (p *printer) value(v *ast.Value) {
	switch {
	case v == nil:
	case v.List != nil:
		p.list(v.List)
	case v.Map != nil:
		p.mapValue(v.Map)
	default:
		p.write(flat(v))
	}
}

func (p *printer) list(l *ast.List) {
	if p.listOneLine(l) {
		p.write(flatList(l))
		return
	}
	span := func(i int) (lexer.Position, lexer.Position) { return l.Items[i].Pos, l.Items[i].EndPos }
	p.bracketed("[", "]", l.Pos, l.EndPos, len(l.Items), span, func(i int) { p.value(l.Items[i]) })
}

func (p *printer) mapValue(m *ast.Map) {
	if p.mapOneLine(m) {
		p.write(flatMap(m))
		return
	}
	span := func(i int) (lexer.Position, lexer.Position) { return m.Entries[i].Pos, m.Entries[i].EndPos }
	// "key = value" entries on consecutive lines align their "=" like
	// block attributes; "key: value" entries (test records) are not padded.
	widths := make([]int, len(m.Entries))
	alignRuns(len(m.Entries), widths, func(i int) (int, bool) {
		e := m.Entries[i]
		if !e.Equals || p.multiline(e.Value) {
			return 0, false
		}
		return utf8.RuneCountInString(entryName(e)), true
	}, span, p)
	p.bracketed("{", "}", m.Pos, m.EndPos, len(m.Entries), span, func(i int) {
		e := m.Entries[i]
		key := entryKey(e)
		if pad := widths[i] - utf8.RuneCountInString(entryName(e)); pad > 0 {
			key = entryName(e) + strings.Repeat(" ", pad) + key[len(entryName(e)):]
		}
		p.write(key)
		p.value(e.Value)
	})
}

// bracketed writes the n items of a list or map spanning start to end
// between open and close, one a line with their comments: item writes the
// i-th.
func (p *printer) bracketed(open, close string, start, end lexer.Position, n int, at spans, item func(int)) {
	closeOff := closeOffset(end)
	p.write(open)
	p.trailing(lineOnly(start), at.first(n, closeOff))
	p.indent++
	p.atStart = true
	p.eachLine(n, closeOff, at, false, func(i, next int) {
		item(i)
		_, end := at(i)
		p.trailing(end, next)
	})
	p.leading(closeOff, 0)
	p.atStart = false
	p.indent--
	p.startLine()
	p.write(close)
}

// entryName is an entry's key as printed (quoted if it was).
func entryName(e *ast.MapEntry) string {
	if e.Key != nil {
		return str(e.Key)
	}
	return e.Ident
}

func entryKey(e *ast.MapEntry) string {
	k := entryName(e)
	if e.Equals {
		return k + " = "
	}
	return k + ": "
}

// flat renders v on one line.
func flat(v *ast.Value) string {
	switch {
	case v == nil:
		return ""
	case v.String != nil:
		return str(v.String)
	case v.Raw != nil:
		return *v.Raw
	case v.Duration != nil:
		return *v.Duration
	case v.Size != nil:
		return *v.Size
	case v.Number != nil:
		return number(v.Number)
	case v.Bool != nil:
		if *v.Bool {
			return "true"
		}
		return "false"
	case v.Null:
		return "null"
	case v.List != nil:
		return flatList(v.List)
	case v.Map != nil:
		return flatMap(v.Map)
	case v.Ref != nil:
		return refOrCall(v.Ref)
	}
	return ""
}

func flatList(l *ast.List) string {
	parts := make([]string, len(l.Items))
	for i, it := range l.Items {
		parts[i] = flat(it)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func flatMap(m *ast.Map) string {
	if len(m.Entries) == 0 {
		return "{}"
	}
	parts := make([]string, len(m.Entries))
	for i, e := range m.Entries {
		parts[i] = entryKey(e) + flat(e.Value)
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func number(n *ast.Number) string {
	if n.Neg {
		return "-" + n.Text
	}
	return n.Text
}

func str(s *ast.StringLit) string {
	if s == nil {
		return `""`
	}
	return s.Raw
}

func refOrCall(r *ast.RefOrCall) string {
	if r == nil {
		return ""
	}
	s := r.Name.String()
	if !r.Call {
		return s
	}
	args := make([]string, len(r.Args))
	for i, a := range r.Args {
		if a.Name != "" {
			args[i] = a.Name + " = " + flat(a.Value)
		} else {
			args[i] = flat(a.Value)
		}
	}
	return s + "(" + strings.Join(args, ", ") + ")"
}

func paths(ps []*ast.Path) string {
	parts := make([]string, len(ps))
	for i, x := range ps {
		parts[i] = x.String()
	}
	return strings.Join(parts, ", ")
}

func flowNode(n *ast.FlowNode) string {
	if !n.Bracket {
		if len(n.Refs) == 0 {
			return ""
		}
		return portRef(n.Refs[0])
	}
	parts := make([]string, len(n.Refs))
	for i, r := range n.Refs {
		parts[i] = portRef(r)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func ident(id *ast.Ident) string {
	if id == nil {
		return ""
	}
	return id.Name
}

func portRef(r *ast.PortRef) string {
	if r == nil {
		return ""
	}
	return r.String()
}

func endOf(r *ast.RefOrCall, def lexer.Position) lexer.Position {
	if r == nil {
		return lineOnly(def)
	}
	return r.EndPos
}

func endOfPath(x *ast.Path, def lexer.Position) lexer.Position {
	if x == nil {
		return lineOnly(def)
	}
	return x.EndPos
}

func endOfString(x *ast.StringLit, def lexer.Position) lexer.Position {
	if x == nil {
		return lineOnly(def)
	}
	return x.EndPos
}
