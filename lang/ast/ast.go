// Package ast defines the syntax tree of .pipe files.
//
// The node types double as the participle grammar (see lang/parser, the only
// package that drives participle). The tree is kept as parsed: later phases
// never write into it; they build their own structures (compiler/ir) that
// point back at nodes for positions.
//
// Every node has Pos (first token) and EndPos (just past its last token),
// filled by the parser; [SpanOf] turns them into a [lang.Span].
package ast

import (
	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
)

// SpanOf converts participle positions into a lang.Span.
// It is the only place where that conversion happens.
func SpanOf(pos, end lexer.Position) lang.Span {
	s := lang.Span{
		File:  pos.Filename,
		Start: lang.Pos{Offset: pos.Offset, Line: pos.Line, Column: pos.Column},
		End:   lang.Pos{Offset: end.Offset, Line: end.Line, Column: end.Column},
	}
	if !s.End.IsValid() || s.End.Offset < s.Start.Offset {
		s.End = s.Start
	}
	return s
}

// File is one parsed .pipe file.
type File struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Items []*TopItem `parser:"@@*"`

	// Comments holds every comment of the file in source order; the grammar
	// elides them and the parser fills this in for the formatter.
	Comments []*Comment `parser:""`
	// Name is the file name given to the parser.
	Name string `parser:""`
}

// Comment is a // or /* */ comment, text included.
type Comment struct {
	Pos    lexer.Position
	EndPos lexer.Position
	Text   string
}

// TopItem is one top-level declaration; exactly one field is set.
type TopItem struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Pipeline *Pipeline  `parser:"  @@"`
	Import   *Import    `parser:"| @@"`
	Schema   *Schema    `parser:"| @@"`
	Def      *Def       `parser:"| @@"`
	Stage    *Stage     `parser:"| @@"`
	Test     *Test      `parser:"| @@"`
	Param    *ParamDecl `parser:"| @@"`
	Flow     *Flow      `parser:"| @@"`
}

// Pipeline is the `pipeline [name] { ... }` settings block.
type Pipeline struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name  string      `parser:"'pipeline' @Ident?"`
	Items []*BodyItem `parser:"'{' @@* '}'"`
}

// Import is `import "path" [as name]`.
type Import struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Path  *StringLit `parser:"'import' @@"`
	Alias *Ident     `parser:"( 'as' @@ )?"`
}

// Schema is `schema Name { field: type ... }`, or `schema Name from "file"`
// whose type is read from a schema file (an Avro .avsc, a .proto message
// as "file.proto#pkg.Message", a JSON Schema .json).
type Schema struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name   Ident      `parser:"'schema' @@"`
	From   *StringLit `parser:"( 'from' @@"`
	Fields []*Field   `parser:"| '{' @@* '}' )"`
}

// Field is `name: type` in a schema or inline record type.
type Field struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name Ident `parser:"@@ ':'"`
	Type *Type `parser:"@@ ','?"`
}

// Type is a type expression: list<T>, map<K,V>, { fields }, a scalar or schema
// name (possibly qualified by an import alias), each optionally followed by ?.
type Type struct {
	Pos    lexer.Position
	EndPos lexer.Position

	List     *Type    `parser:"(  'list' '<' @@ '>'"`
	MapKey   *Type    `parser:" | 'map' '<' @@ ','"`
	MapValue *Type    `parser:"   @@ '>'"`
	Record   []*Field `parser:" | '{' @@* '}'"`
	Name     *Path    `parser:" | @@ )"`
	Optional bool     `parser:"@'?'?"`
}

// Kind is "source", "transform" or "sink".
type Kind string

const (
	SourceKind    Kind = "source"
	TransformKind Kind = "transform"
	SinkKind      Kind = "sink"
)

// Stage is `source|transform|sink name: component[(args)] [{ body }]`.
type Stage struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Kind      Kind        `parser:"@( 'source' | 'transform' | 'sink' )"`
	Name      Ident       `parser:"@@ ':'"`
	Component *RefOrCall  `parser:"@@"`
	Body      bool        `parser:"( @'{'"`
	Items     []*BodyItem `parser:"  @@* '}' )?"`
}

// Def is a parameterised stage template:
// `def transform name(p: T = v, ...): component { body }`.
type Def struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Kind      Kind        `parser:"'def' @( 'source' | 'transform' | 'sink' )"`
	Name      Ident       `parser:"@@"`
	Params    []*Param    `parser:"'(' ( @@ ( ',' @@ )* ','? )? ')' ':'"`
	Component *RefOrCall  `parser:"@@"`
	Body      bool        `parser:"( @'{'"`
	Items     []*BodyItem `parser:"  @@* '}' )?"`
}

// Param is one def parameter: `name: type [= default]`.
type Param struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name    Ident  `parser:"@@ ':'"`
	Type    *Type  `parser:"@@"`
	Default *Value `parser:"( '=' @@ )?"`
}

// ParamDecl is a run-time parameter: `param name: type = value`, read by
// expressions as params.name.
type ParamDecl struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Param *Param `parser:"'param' @@"`
}

// BodyItem is one item of a stage, def, pipeline or nested block body.
// The grammar is loose (every body takes every item); the compiler checks
// which items a component accepts.
type BodyItem struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Where  *Expr   `parser:"  'where' @@"`
	Case   *Case   `parser:"| @@"`
	Else   *Ident  `parser:"| 'else' @@"`
	Drop   []*Path `parser:"| 'drop' @@ ( ',' @@ )*"`
	Keep   []*Path `parser:"| 'keep' @@ ( ',' @@ )*"`
	Member *Member `parser:"| @@"`
}

// Case is a route port: `case port when expr`.
type Case struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Port *Ident `parser:"'case' @@"`
	When *Expr  `parser:"'when' @@"`
}

// Member is a path-led body item, one of:
//
//	path [: type] := expr   (Assign set: a per-record expression)
//	path = value            (Value set: a static attribute)
//	name { items }          (Block set: a nested attribute block)
type Member struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Path   *Path       `parser:"@@"`
	Type   *Type       `parser:"(  ( ':' @@ )?"`
	Assign *Expr       `parser:"   ':=' @@"`
	Value  *Value      `parser:" | '=' @@"`
	Block  bool        `parser:" | @'{'"`
	Items  []*BodyItem `parser:"   @@* '}' )"`
}

// Expr is the raw source of an expr-lang expression, which runs from after
// `where`, `when` or `:=` to the end of the line (newlines inside brackets
// continue it; an unmatched closing bracket ends it).
type Expr struct {
	Pos    lexer.Position // position of the first character of Text
	EndPos lexer.Position

	Text string `parser:"@Expr"`
}

// Ident is a bare identifier with its position: declared names (of
// stages, schemas, fields, defs, parameters, import aliases) and stage
// references are Idents, so that a diagnostic about a name points at the
// name itself.
type Ident struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name string `parser:"@Ident"`
}

// String returns the name.
func (i Ident) String() string { return i.Name }

// Path is a dotted name: a, a.b, lib.stamp.
type Path struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Parts []string `parser:"@Ident ( '.' @Ident )*"`
}

// String returns the path joined with dots.
func (p *Path) String() string {
	if p == nil {
		return ""
	}
	s := ""
	for i, part := range p.Parts {
		if i > 0 {
			s += "."
		}
		s += part
	}
	return s
}

// RefOrCall is a name, optionally called: json, lib.stamp(system = "x"),
// retry(max = 5, backoff = 1s).
type RefOrCall struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name *Path  `parser:"@@"`
	Call bool   `parser:"( @'('"`
	Args []*Arg `parser:"  ( @@ ( ',' @@ )* ','? )? ')' )?"`
}

// Arg is a call argument, named (`max = 5`) or positional (`dlq`).
type Arg struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name  string `parser:"( @Ident '=' )?"`
	Value *Value `parser:"@@"`
}

// Value is a static literal; exactly one field is set.
type Value struct {
	Pos    lexer.Position
	EndPos lexer.Position

	String   *StringLit `parser:"  @@"`
	Raw      *string    `parser:"| @RawString"`
	Duration *string    `parser:"| @Duration"`
	Size     *string    `parser:"| @Size"`
	Number   *Number    `parser:"| @@"`
	Bool     *Bool      `parser:"| @( 'true' | 'false' )"`
	Null     bool       `parser:"| @'null'"`
	List     *List      `parser:"| @@"`
	Map      *Map       `parser:"| @@"`
	Ref      *RefOrCall `parser:"| @@"`
}

// Number is an int or float literal with an optional minus sign. Text holds
// the literal as written (without the sign).
type Number struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Neg  bool   `parser:"@'-'?"`
	Text string `parser:"( @Float | @Int )"`
}

// IsFloat reports whether the literal is written as a float.
func (n *Number) IsFloat() bool {
	for _, c := range n.Text {
		if c == '.' || c == 'e' || c == 'E' {
			return true
		}
	}
	return false
}

// Bool is a boolean literal.
type Bool bool

// Capture implements participle's Capture: "false" is false.
func (b *Bool) Capture(values []string) error {
	*b = values[0] == "true"
	return nil
}

// List is [v, v, ...]; commas between items are optional.
type List struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Items []*Value `parser:"'[' ( @@ ','? )* ']'"`
}

// Map is { key: value, key = value, "quoted key": value }; commas optional.
type Map struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Entries []*MapEntry `parser:"'{' ( @@ ','? )* '}'"`
}

// MapEntry is one key/value pair of a map literal.
type MapEntry struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Key    *StringLit `parser:"(  @@"`
	Ident  string     `parser:" | @Ident )"`
	Equals bool       `parser:"( ':' | @'=' )"`
	Value  *Value     `parser:"@@"`
}

// KeyName returns the entry's key, quoted or not.
func (e *MapEntry) KeyName() string {
	if e.Key != nil {
		return e.Key.Value()
	}
	return e.Ident
}

// StringLit is a double-quoted string. Raw holds the token as written,
// quotes included; Parts holds the decoded text and ${provider:...}
// references, filled in by the parser.
type StringLit struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Raw   string       `parser:"@String"`
	Parts []StringPart `parser:""`
}

// Value returns the decoded string with references written back as ${...}.
func (s *StringLit) Value() string {
	out := ""
	for _, p := range s.Parts {
		if p.Interp != nil {
			out += p.Interp.String()
		} else {
			out += p.Text
		}
	}
	return out
}

// HasInterp reports whether the string holds a ${...} reference.
func (s *StringLit) HasInterp() bool {
	for _, p := range s.Parts {
		if p.Interp != nil {
			return true
		}
	}
	return false
}

// StringPart is literal text or one ${...} reference.
type StringPart struct {
	Text   string
	Interp *Interp
}

// Interp is a ${provider:[path:]key} reference inside a string: secrets
// (env, file) stay symbolic until a task starts; param is compile-time.
type Interp struct {
	Span     lang.Span
	Provider string // env | file | param
	Path     string // file path, for file
	Key      string
}

func (i *Interp) String() string {
	if i.Path != "" {
		return "${" + i.Provider + ":" + i.Path + ":" + i.Key + "}"
	}
	return "${" + i.Provider + ":" + i.Key + "}"
}

// Test is `test "name" { items }`.
type Test struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Name  *StringLit  `parser:"'test' @@"`
	Items []*TestItem `parser:"'{' @@* '}'"`
}

// TestItem is one item of a test; exactly one field is set.
type TestItem struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Given  *Given  `parser:"  @@"`
	Expect *Expect `parser:"| @@"`
	Member *Member `parser:"| @@"`
}

// Given is `given source [records]`.
type Given struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Source  *Ident `parser:"'given' @@"`
	Records *List  `parser:"@@"`
}

// Expect is `expect sink_or_port ( [records] | count N | empty | where expr )`.
type Expect struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Target  *PortRef `parser:"'expect' @@"`
	Records *List    `parser:"(  @@"`
	Count   *Number  `parser:" | 'count' @@"`
	Empty   bool     `parser:" | @'empty'"`
	Where   *Expr    `parser:" | 'where' @@ )"`
}

// Flow is an arrow chain: a -> b -> [c, d].
type Flow struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Nodes []*FlowNode `parser:"@@ ( '->' @@ )+"`
}

// FlowNode is one step of a flow: a port reference or a bracketed list.
type FlowNode struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Bracket bool       `parser:"(  @'['"`
	Refs    []*PortRef `parser:"   @@ ( ',' @@ )* ','? ']' | @@ )"`
}

// PortRef is `stage` or `stage.port`.
type PortRef struct {
	Pos    lexer.Position
	EndPos lexer.Position

	Stage Ident  `parser:"@@"`
	Port  string `parser:"( '.' @Ident )?"`
}

// String returns stage or stage.port.
func (p *PortRef) String() string {
	if p.Port == "" {
		return p.Stage.Name
	}
	return p.Stage.Name + "." + p.Port
}
