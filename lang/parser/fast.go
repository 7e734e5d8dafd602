package parser

import (
	"github.com/alecthomas/participle/v2/lexer"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
)

// fastParse builds, without reflection, the tree that the participle
// grammar in lang/ast builds for a file that it accepts: same nodes, same
// positions (Pos is the first token of a node, EndPos the position just
// past its last token). It gives up (ok false) at the first token it does
// not expect; ParseFile then runs participle, which reports the error and
// returns the partial tree. FuzzParse checks that both agree.
//
// Each choice below follows participle's with lookahead 1: an alternative
// is taken when its first two tokens match, which is exactly when
// participle, having consumed more than one token of it, would no longer
// backtrack. Strings are decoded on the way.
func fastParse(name string, toks []lexer.Token) (f *ast.File, diags lang.Diagnostics, ok bool) {
	p := &fastParser{name: name, toks: toks}
	for i, t := range toks {
		if t.Type != tokWhitespace && t.Type != tokComment {
			p.sig = append(p.sig, i)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			if r != errGiveUp {
				panic(r)
			}
			f, diags, ok = nil, nil, false
		}
	}()
	f = &ast.File{}
	for !p.at(0).EOF() {
		f.Items = append(f.Items, p.topItem())
	}
	return f, p.diags, true
}

type giveUp struct{}

var errGiveUp = &giveUp{}

type fastParser struct {
	name  string
	diags lang.Diagnostics // from decoding strings
	toks  []lexer.Token
	sig   []int // indices in toks of the significant tokens; the last is EOF
	i     int   // next significant token
}

// at returns the significant token k places ahead.
func (p *fastParser) at(k int) *lexer.Token {
	j := p.i + k
	if j >= len(p.sig) {
		j = len(p.sig) - 1
	}
	return &p.toks[p.sig[j]]
}

func (p *fastParser) pos() lexer.Position { return p.at(0).Pos }

// end returns the position of the raw token just after the last consumed one.
func (p *fastParser) end() lexer.Position {
	if p.i == 0 {
		return p.toks[0].Pos
	}
	return p.toks[p.sig[p.i-1]+1].Pos
}

func (p *fastParser) fail() { panic(errGiveUp) }

// is reports whether the token k ahead has the value v (participle matches
// literals by value, whatever the token type).
func (p *fastParser) is(k int, v string) bool {
	t := p.at(k)
	return !t.EOF() && t.Value == v
}

func (p *fastParser) isType(k int, typ lexer.TokenType) bool { return p.at(k).Type == typ }

func (p *fastParser) next() *lexer.Token {
	t := p.at(0)
	if t.EOF() {
		p.fail()
	}
	p.i++
	return t
}

func (p *fastParser) expect(v string) {
	if !p.is(0, v) {
		p.fail()
	}
	p.i++
}

func (p *fastParser) accept(v string) bool {
	if p.is(0, v) {
		p.i++
		return true
	}
	return false
}

// take consumes a token of type typ and returns its text.
func (p *fastParser) take(typ lexer.TokenType) string {
	if !p.isType(0, typ) {
		p.fail()
	}
	return p.next().Value
}

func (p *fastParser) ident() string { return p.take(tokIdent) }

func isKind(v string) bool { return v == "source" || v == "transform" || v == "sink" }

func (p *fastParser) topItem() *ast.TopItem {
	it := &ast.TopItem{Pos: p.pos()}
	t := p.at(0)
	switch {
	case t.Value == "pipeline" && (p.isType(1, tokIdent) || p.is(1, "{")):
		it.Pipeline = p.pipeline()
	case t.Value == "import" && p.isType(1, tokString):
		it.Import = p.importDecl()
	case t.Value == "schema" && p.isType(1, tokIdent):
		it.Schema = p.schema()
	case t.Value == "def" && isKind(p.at(1).Value) && !p.at(1).EOF():
		it.Def = p.def()
	case isKind(t.Value) && p.isType(1, tokIdent):
		it.Stage = p.stage()
	case t.Value == "test" && p.isType(1, tokString):
		it.Test = p.test()
	case t.Value == "param" && p.isType(1, tokIdent):
		it.Param = p.paramDecl()
	default:
		it.Flow = p.flow()
	}
	it.EndPos = p.end()
	return it
}

func (p *fastParser) pipeline() *ast.Pipeline {
	n := &ast.Pipeline{Pos: p.pos()}
	p.expect("pipeline")
	if p.isType(0, tokIdent) {
		n.Name = p.next().Value
	}
	p.expect("{")
	n.Items = p.bodyItems()
	p.expect("}")
	n.EndPos = p.end()
	return n
}

func (p *fastParser) importDecl() *ast.Import {
	n := &ast.Import{Pos: p.pos()}
	p.expect("import")
	n.Path = p.stringLit()
	if p.is(0, "as") && p.isType(1, tokIdent) {
		p.i++
		n.Alias = p.identNode()
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) schema() *ast.Schema {
	n := &ast.Schema{Pos: p.pos()}
	p.expect("schema")
	n.Name = *p.identNode()
	if p.is(0, "from") {
		p.i++
		n.From = p.stringLit()
		n.EndPos = p.end()
		return n
	}
	p.expect("{")
	n.Fields = p.fields()
	p.expect("}")
	n.EndPos = p.end()
	return n
}

// fields parses Field* up to (not including) "}".
func (p *fastParser) fields() []*ast.Field {
	var out []*ast.Field
	for p.isType(0, tokIdent) {
		f := &ast.Field{Pos: p.pos()}
		f.Name = *p.identNode()
		p.expect(":")
		f.Type = p.typ()
		p.accept(",")
		f.EndPos = p.end()
		out = append(out, f)
	}
	return out
}

func (p *fastParser) typ() *ast.Type {
	n := &ast.Type{Pos: p.pos()}
	switch {
	case p.is(0, "list") && p.is(1, "<"):
		p.i += 2
		n.List = p.typ()
		p.expect(">")
	case p.is(0, "map") && p.is(1, "<"):
		p.i += 2
		n.MapKey = p.typ()
		p.expect(",")
		n.MapValue = p.typ()
		p.expect(">")
	case p.is(0, "{"):
		p.i++
		n.Record = p.fields()
		p.expect("}")
	default:
		n.Name = p.path()
	}
	if p.accept("?") {
		n.Optional = true
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) def() *ast.Def {
	n := &ast.Def{Pos: p.pos()}
	p.expect("def")
	n.Kind = ast.Kind(p.next().Value)
	n.Name = *p.identNode()
	p.expect("(")
	if p.isType(0, tokIdent) {
		n.Params = append(n.Params, p.param())
		for p.is(0, ",") && p.isType(1, tokIdent) {
			p.i++
			n.Params = append(n.Params, p.param())
		}
		p.accept(",")
	}
	p.expect(")")
	p.expect(":")
	n.Component = p.refOrCall()
	if p.accept("{") {
		n.Body = true
		n.Items = p.bodyItems()
		p.expect("}")
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) paramDecl() *ast.ParamDecl {
	n := &ast.ParamDecl{Pos: p.pos()}
	p.expect("param")
	n.Param = p.param()
	n.EndPos = p.end()
	return n
}

func (p *fastParser) param() *ast.Param {
	n := &ast.Param{Pos: p.pos()}
	n.Name = *p.identNode()
	p.expect(":")
	n.Type = p.typ()
	if p.accept("=") {
		n.Default = p.value()
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) stage() *ast.Stage {
	n := &ast.Stage{Pos: p.pos()}
	n.Kind = ast.Kind(p.next().Value)
	n.Name = *p.identNode()
	p.expect(":")
	n.Component = p.refOrCall()
	if p.accept("{") {
		n.Body = true
		n.Items = p.bodyItems()
		p.expect("}")
	}
	n.EndPos = p.end()
	return n
}

// bodyItems parses BodyItem* up to (not including) "}".
func (p *fastParser) bodyItems() []*ast.BodyItem {
	var out []*ast.BodyItem
	for !p.is(0, "}") && !p.at(0).EOF() {
		out = append(out, p.bodyItem())
	}
	return out
}

func (p *fastParser) bodyItem() *ast.BodyItem {
	n := &ast.BodyItem{Pos: p.pos()}
	t := p.at(0)
	switch {
	case t.Value == "where" && p.isType(1, tokExpr):
		p.i++
		n.Where = p.expr()
	case t.Value == "case" && p.isType(1, tokIdent):
		c := &ast.Case{Pos: p.pos()}
		p.i++
		c.Port = p.identNode()
		p.expect("when")
		c.When = p.expr()
		c.EndPos = p.end()
		n.Case = c
	case t.Value == "else" && p.isType(1, tokIdent):
		p.i++
		n.Else = p.identNode()
	case t.Value == "drop" && p.isType(1, tokIdent):
		p.i++
		n.Drop = p.paths()
	case t.Value == "keep" && p.isType(1, tokIdent):
		p.i++
		n.Keep = p.paths()
	case t.Type == tokIdent:
		n.Member = p.member()
	default:
		p.fail()
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) paths() []*ast.Path {
	out := []*ast.Path{p.path()}
	for p.is(0, ",") && p.isType(1, tokIdent) {
		p.i++
		out = append(out, p.path())
	}
	return out
}

func (p *fastParser) member() *ast.Member {
	n := &ast.Member{Pos: p.pos()}
	n.Path = p.path()
	switch {
	case p.is(0, ":"):
		p.i++
		n.Type = p.typ()
		p.expect(":=")
		n.Assign = p.expr()
	case p.is(0, ":="):
		p.i++
		n.Assign = p.expr()
	case p.is(0, "="):
		p.i++
		n.Value = p.value()
	case p.is(0, "{"):
		p.i++
		n.Block = true
		n.Items = p.bodyItems()
		p.expect("}")
	default:
		p.fail()
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) expr() *ast.Expr {
	n := &ast.Expr{Pos: p.pos()}
	n.Text = p.take(tokExpr)
	n.EndPos = p.end()
	return n
}

func (p *fastParser) identNode() *ast.Ident {
	n := &ast.Ident{Pos: p.pos()}
	n.Name = p.ident()
	n.EndPos = p.end()
	return n
}

func (p *fastParser) path() *ast.Path {
	n := &ast.Path{Pos: p.pos()}
	n.Parts = []string{p.ident()}
	for p.is(0, ".") && p.isType(1, tokIdent) {
		p.i++
		n.Parts = append(n.Parts, p.next().Value)
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) refOrCall() *ast.RefOrCall {
	n := &ast.RefOrCall{Pos: p.pos()}
	n.Name = p.path()
	if p.accept("(") {
		n.Call = true
		if !p.is(0, ")") {
			n.Args = append(n.Args, p.arg())
			for p.is(0, ",") && !p.is(1, ")") {
				p.i++
				n.Args = append(n.Args, p.arg())
			}
			p.accept(",")
		}
		p.expect(")")
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) arg() *ast.Arg {
	n := &ast.Arg{Pos: p.pos()}
	if p.isType(0, tokIdent) && p.is(1, "=") {
		n.Name = p.next().Value
		p.i++
	}
	n.Value = p.value()
	n.EndPos = p.end()
	return n
}

func (p *fastParser) value() *ast.Value {
	n := &ast.Value{Pos: p.pos()}
	t := p.at(0)
	switch {
	case t.Type == tokString:
		n.String = p.stringLit()
	case t.Type == tokRawString:
		s := p.next().Value
		n.Raw = &s
	case t.Type == tokDuration:
		s := p.next().Value
		n.Duration = &s
	case t.Type == tokSize:
		s := p.next().Value
		n.Size = &s
	case t.Type == tokInt || t.Type == tokFloat || (t.Value == "-" && (p.isType(1, tokInt) || p.isType(1, tokFloat))):
		n.Number = p.number()
	case t.Value == "true" || t.Value == "false":
		b := ast.Bool(p.next().Value == "true")
		n.Bool = &b
	case t.Value == "null":
		p.i++
		n.Null = true
	case t.Value == "[":
		n.List = p.list()
	case t.Value == "{":
		n.Map = p.mapLit()
	case t.Type == tokIdent:
		n.Ref = p.refOrCall()
	default:
		p.fail()
	}
	n.EndPos = p.end()
	return n
}

// number is an int or float literal, optionally negated.
func (p *fastParser) number() *ast.Number {
	n := &ast.Number{Pos: p.pos()}
	n.Neg = p.accept("-")
	if !p.isType(0, tokInt) && !p.isType(0, tokFloat) {
		p.fail()
	}
	n.Text = p.next().Value
	n.EndPos = p.end()
	return n
}

func (p *fastParser) list() *ast.List {
	n := &ast.List{Pos: p.pos()}
	p.expect("[")
	for !p.is(0, "]") {
		n.Items = append(n.Items, p.value())
		p.accept(",")
	}
	p.i++
	n.EndPos = p.end()
	return n
}

func (p *fastParser) mapLit() *ast.Map {
	n := &ast.Map{Pos: p.pos()}
	p.expect("{")
	for !p.is(0, "}") {
		e := &ast.MapEntry{Pos: p.pos()}
		switch {
		case p.isType(0, tokString):
			e.Key = p.stringLit()
		case p.isType(0, tokIdent):
			e.Ident = p.next().Value
		default:
			p.fail()
		}
		switch {
		case p.accept(":"):
		case p.accept("="):
			e.Equals = true
		default:
			p.fail()
		}
		e.Value = p.value()
		e.EndPos = p.end()
		n.Entries = append(n.Entries, e)
		p.accept(",")
	}
	p.i++
	n.EndPos = p.end()
	return n
}

func (p *fastParser) stringLit() *ast.StringLit {
	n := &ast.StringLit{Pos: p.pos()}
	n.Raw = p.take(tokString)
	n.EndPos = p.end()
	var d lang.Diagnostics
	n.Parts, d = decodeString(p.name, n.Raw, n.Pos)
	p.diags = append(p.diags, d...)
	return n
}

func (p *fastParser) test() *ast.Test {
	n := &ast.Test{Pos: p.pos()}
	p.expect("test")
	n.Name = p.stringLit()
	p.expect("{")
	for !p.is(0, "}") && !p.at(0).EOF() {
		n.Items = append(n.Items, p.testItem())
	}
	p.expect("}")
	n.EndPos = p.end()
	return n
}

func (p *fastParser) testItem() *ast.TestItem {
	n := &ast.TestItem{Pos: p.pos()}
	t := p.at(0)
	switch {
	case t.Value == "given" && p.isType(1, tokIdent):
		g := &ast.Given{Pos: p.pos()}
		p.i++
		g.Source = p.identNode()
		g.Records = p.list()
		g.EndPos = p.end()
		n.Given = g
	case t.Value == "expect" && p.isType(1, tokIdent):
		e := &ast.Expect{Pos: p.pos()}
		p.i++
		e.Target = p.portRef()
		switch {
		case p.is(0, "["):
			e.Records = p.list()
		case p.is(0, "count"):
			p.i++
			e.Count = p.number()
		case p.is(0, "empty"):
			p.i++
			e.Empty = true
		case p.is(0, "where"):
			p.i++
			e.Where = p.expr()
		default:
			p.fail()
		}
		e.EndPos = p.end()
		n.Expect = e
	case t.Type == tokIdent:
		n.Member = p.member()
	default:
		p.fail()
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) portRef() *ast.PortRef {
	n := &ast.PortRef{Pos: p.pos()}
	n.Stage = *p.identNode()
	if p.is(0, ".") && p.isType(1, tokIdent) {
		p.i++
		n.Port = p.next().Value
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) flow() *ast.Flow {
	n := &ast.Flow{Pos: p.pos()}
	n.Nodes = append(n.Nodes, p.flowNode())
	p.expect("->")
	n.Nodes = append(n.Nodes, p.flowNode())
	for p.accept("->") {
		n.Nodes = append(n.Nodes, p.flowNode())
	}
	n.EndPos = p.end()
	return n
}

func (p *fastParser) flowNode() *ast.FlowNode {
	n := &ast.FlowNode{Pos: p.pos()}
	if p.accept("[") {
		n.Bracket = true
		n.Refs = append(n.Refs, p.portRef())
		for p.is(0, ",") && p.isType(1, tokIdent) {
			p.i++
			n.Refs = append(n.Refs, p.portRef())
		}
		p.accept(",")
		p.expect("]")
	} else {
		n.Refs = append(n.Refs, p.portRef())
	}
	n.EndPos = p.end()
	return n
}
