package compiler

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"pipe.dev/pipe/compiler/exprs"
	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/parser"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// Config configures a compilation. Its zero value works.
type Config struct {
	// Registry holds the component specs (nil: stdlib.Default).
	Registry *stdlib.Registry
	// ReadFile reads imported files (nil: os.ReadFile). Import paths are
	// relative to the importing file's directory.
	ReadFile func(path string) ([]byte, error)
}

// Program is a checked pipeline (see package ir).
type Program = ir.Program

// Compile parses and checks the file name holding src. It returns the
// program (nil when any error was found) and every diagnostic, sorted.
func Compile(cfg *Config, name string, src []byte) (prog *Program, diags lang.Diagnostics) {
	defer recoverInternal(name, &prog, &diags)
	f, pd := parser.ParseFile(name, src)
	if f == nil || pd.HasErrors() {
		pd.Sort()
		return nil, pd
	}
	prog, diags = CompileFile(cfg, f, src)
	diags = append(pd, diags...)
	diags.Sort()
	return prog, diags
}

// CompileFile checks an already parsed file; src is the file's source (for
// positions inside expressions).
func CompileFile(cfg *Config, f *ast.File, src []byte) (prog *Program, diags lang.Diagnostics) {
	if cfg == nil {
		cfg = &Config{}
	}
	name := f.Name
	defer recoverInternal(name, &prog, &diags)
	c := newChecker(cfg)
	u := c.newUnit(name, f, src)
	c.main = u
	c.loading[cleanPath(name)] = true
	c.resolveUnit(u)
	prog = c.check()
	c.diags = dedupe(c.diags)
	c.diags.Sort()
	if c.diags.HasErrors() {
		prog = nil
	}
	return prog, c.diags
}

// recoverInternal, deferred, turns a panic of the compiler into a result
// without a program and with an internal-error diagnostic about file.
func recoverInternal(file string, prog **Program, diags *lang.Diagnostics) {
	if r := recover(); r != nil {
		*prog = nil
		*diags = append(*diags, internalError(file, r))
		diags.Sort()
	}
}

func internalError(file string, r any) lang.Diagnostic {
	d := lang.Errorf(lang.Internal, lang.Span{File: file}, "internal error: %v", r)
	d.Detail = string(debug.Stack())
	return d
}

// checker holds the state of one compilation.
type checker struct {
	reg      *stdlib.Registry
	readFile func(string) ([]byte, error)
	diags    lang.Diagnostics

	main    *unit
	units   map[string]*unit // imported files by cleaned path
	loading map[string]bool  // files being imported (cycle detection)

	stages           map[string]*stage
	order            []*stage
	edges            []*edge
	prog             *ir.Program
	inFlow           map[string]bool
	flowPos          map[string]lang.Span // first flow mention of a stage
	pipelineDelivery lang.Span            // where the pipeline sets delivery
	instancesSpan    lang.Span            // where the pipeline sets instances
	exprs            exprs.Checker        // reuses typed environments across expressions
	tops             map[topKey][]stdlib.Param
	// fileParams is the type of the file's run-time parameters as
	// expressions see them (params.x), nil without any; paramUsed holds
	// those an expression reads.
	fileParams *types.Type
	paramUsed  map[string]bool
}

func newChecker(cfg *Config) *checker {
	c := &checker{
		reg:       cfg.Registry,
		readFile:  cfg.ReadFile,
		units:     map[string]*unit{},
		loading:   map[string]bool{},
		stages:    map[string]*stage{},
		inFlow:    map[string]bool{},
		flowPos:   map[string]lang.Span{},
		paramUsed: map[string]bool{},
	}
	if c.reg == nil {
		c.reg = stdlib.Default
	}
	if c.readFile == nil {
		c.readFile = os.ReadFile
	}
	return c
}

func cleanPath(p string) string { return filepath.Clean(p) }

func (c *checker) add(d lang.Diagnostic, rel []lang.Related) {
	if len(rel) > 0 {
		d.Related = append(d.Related, rel...)
	}
	c.diags = append(c.diags, d)
}

func (c *checker) errorf(code lang.Code, span lang.Span, format string, args ...any) *lang.Diagnostic {
	c.diags = append(c.diags, lang.Errorf(code, span, format, args...))
	return &c.diags[len(c.diags)-1]
}

func (c *checker) warnf(code lang.Code, span lang.Span, format string, args ...any) *lang.Diagnostic {
	c.diags = append(c.diags, lang.Warningf(code, span, format, args...))
	return &c.diags[len(c.diags)-1]
}

// unit is one file: the main file or an imported one.
type unit struct {
	name    string
	file    *ast.File
	src     []byte
	lines   *lang.Lines
	schemas map[string]*schemaInfo
	defs    map[string]*defInfo
	imports map[string]*importInfo
	// names maps every top-level name (schema, def, import) to where it was
	// first defined, for duplicate checks.
	names map[string]lang.Span
}

type schemaInfo struct {
	decl      *ast.Schema
	u         *unit
	span      lang.Span
	typ       *types.Type
	done      bool
	resolving bool
	used      bool
}

type defInfo struct {
	decl      *ast.Def
	u         *unit
	span      lang.Span
	used      bool
	paramUsed map[string]bool
	ptypes    map[string]*types.Type // parameter types, resolved once
}

// declares reports whether the def has a parameter called name.
func (di *defInfo) declares(name string) bool {
	for _, p := range di.decl.Params {
		if p.Name.Name == name {
			return true
		}
	}
	return false
}

type importInfo struct {
	alias string
	u     *unit // nil when the import failed
	span  lang.Span
	used  bool
}

func (c *checker) newUnit(name string, f *ast.File, src []byte) *unit {
	return &unit{
		name:    name,
		file:    f,
		src:     src,
		lines:   lang.NewLines(name, src),
		schemas: map[string]*schemaInfo{},
		defs:    map[string]*defInfo{},
		imports: map[string]*importInfo{},
		names:   map[string]lang.Span{},
	}
}

// nodeSpan returns the span of an AST node from its participle positions,
// with the file name set to the unit's.
func (u *unit) nodeSpan(s lang.Span) lang.Span {
	if s.File == "" {
		s.File = u.name
	}
	return s
}

// identSpan is the span of a name in u's source.
func (u *unit) identSpan(id ast.Ident) lang.Span {
	return u.lines.Span(id.Pos.Offset, id.EndPos.Offset)
}

// declare records a top-level name in u, reporting duplicates and reserved
// names; it reports whether the name is new.
func (c *checker) declare(u *unit, name string, span lang.Span, what string) bool {
	if reserved[name] {
		c.errorf(lang.ReservedName, span, "%s name %q is reserved", what, name)
	}
	if first, dup := u.names[name]; dup {
		d := c.errorf(lang.DuplicateName, span, "%s %q is already defined", what, name)
		d.Related = []lang.Related{{Span: first, Message: "first defined here"}}
		return false
	}
	u.names[name] = span
	return true
}

// reserved holds names no stage, schema, def, import or field may take.
// IsReserved says whether name cannot name a stage, schema, def, import
// or parameter (PIPE103).
func IsReserved(name string) bool { return reserved[name] }

var reserved = map[string]bool{
	"meta": true, "params": true, "param": true,
	"source": true, "transform": true, "sink": true, "pipeline": true, "import": true,
	"schema": true, "def": true, "test": true, "where": true, "case": true, "when": true,
	"else": true, "drop": true, "keep": true, "as": true, "true": true, "false": true,
	"null": true, "nil": true, "given": true, "expect": true, "count": true, "empty": true,
	"list": true, "map": true,
	"any": true, "string": true, "int": true, "float": true, "bool": true,
	"timestamp": true, "bytes": true,
}

// resolveUnit declares u's imports, schemas and defs.
func (c *checker) resolveUnit(u *unit) {
	for _, it := range u.file.Items {
		switch {
		case it.Import != nil:
			c.loadImport(u, it.Import)
		case it.Schema != nil:
			s := it.Schema
			span := u.identSpan(s.Name)
			if c.declare(u, s.Name.Name, span, "schema") {
				u.schemas[s.Name.Name] = &schemaInfo{decl: s, u: u, span: span}
			}
		case it.Def != nil:
			d := it.Def
			span := u.identSpan(d.Name)
			pt := c.checkDefParams(u, d)
			if c.declare(u, d.Name.Name, span, "def") {
				u.defs[d.Name.Name] = &defInfo{decl: d, u: u, span: span, paramUsed: map[string]bool{}, ptypes: pt}
			}
		}
	}
	// Resolve every schema now so errors in unused ones are reported too.
	for _, it := range u.file.Items {
		if it.Schema != nil {
			if si := u.schemas[it.Schema.Name.Name]; si != nil && si.decl == it.Schema {
				c.schemaType(si)
			}
		}
	}
}

func (c *checker) loadImport(u *unit, im *ast.Import) {
	span := u.nodeSpan(ast.SpanOf(im.Pos, im.EndPos))
	rel := im.Path.Value()
	base := filepath.Base(rel)
	alias, aspan := base[:len(base)-len(filepath.Ext(base))], span
	if im.Alias != nil {
		alias, aspan = im.Alias.Name, u.identSpan(*im.Alias)
	}
	info := &importInfo{alias: alias, span: aspan}
	if c.declare(u, alias, aspan, "import") {
		u.imports[alias] = info
	}
	path := rel
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(u.name), rel)
	}
	key := cleanPath(path)
	pspan := u.nodeSpan(ast.SpanOf(im.Path.Pos, im.Path.EndPos))
	if c.loading[key] {
		c.errorf(lang.ImportError, pspan, "import cycle: %q imports itself", rel)
		return
	}
	if iu, ok := c.units[key]; ok {
		info.u = iu
		return
	}
	src, err := c.readFile(path)
	if err != nil {
		c.errorf(lang.ImportError, pspan, "cannot read import %q: %v", rel, unwrapPathErr(err))
		return
	}
	f, pd := parser.ParseFile(path, src)
	if f == nil || pd.HasErrors() {
		d := c.errorf(lang.ImportError, pspan, "cannot parse import %q", rel)
		for _, e := range pd.Errors() {
			d.Related = append(d.Related, lang.Related{Span: e.Span, Message: e.Message})
		}
		return
	}
	c.libraryOnly(f, pspan, rel)
	iu := c.newUnit(path, f, src)
	c.units[key] = iu
	info.u = iu
	c.loading[key] = true
	c.resolveUnit(iu)
	delete(c.loading, key)
}

// libraryOnly reports an imported file that holds more than schemas, defs
// and imports: its stages, flows, tests and pipeline block would be ignored.
// One error at the import names the first; the others are related spans.
func (c *checker) libraryOnly(f *ast.File, pspan lang.Span, rel string) {
	var d *lang.Diagnostic
	for _, it := range f.Items {
		var what string
		switch {
		case it.Stage != nil:
			what = fmt.Sprintf("%s %q", it.Stage.Kind, it.Stage.Name)
		case it.Flow != nil:
			what = "a flow"
		case it.Test != nil:
			what = fmt.Sprintf("test %q", it.Test.Name.Value())
		case it.Pipeline != nil:
			what = "a pipeline block"
		case it.Param != nil:
			what = fmt.Sprintf("param %q", it.Param.Param.Name)
		default:
			continue
		}
		span := ast.SpanOf(it.Pos, it.EndPos)
		if span.File == "" {
			span.File = f.Name
		}
		if d == nil {
			d = c.errorf(lang.ImportError, pspan, "imported file %q holds %s: a library holds only schemas, defs and imports", rel, what)
			d.Detail = "move the stages, flows, tests, params and pipeline block into the importing file"
		}
		d.Related = append(d.Related, lang.Related{Span: span, Message: what + " declared here"})
	}
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// importOf returns the unit imported as alias in u, marking it used.
func (c *checker) importOf(u *unit, alias string, span lang.Span) (*unit, bool) {
	im, ok := u.imports[alias]
	if !ok {
		return nil, false
	}
	im.used = true
	return im.u, true
}

func plural(n int, s string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, s)
	}
	return fmt.Sprintf("%d %ss", n, s)
}

// checkDefParams reports duplicate and reserved parameter names of a def
// and resolves the parameter types.
func (c *checker) checkDefParams(u *unit, d *ast.Def) map[string]*types.Type {
	pt := map[string]*types.Type{}
	seen := map[string]lang.Span{}
	for _, p := range d.Params {
		span := u.identSpan(p.Name)
		if reserved[p.Name.Name] {
			c.errorf(lang.ReservedName, span, "parameter name %q is reserved", p.Name)
		}
		if first, dup := seen[p.Name.Name]; dup {
			e := c.errorf(lang.DuplicateName, span, "parameter %q is already defined", p.Name)
			e.Related = []lang.Related{{Span: first, Message: "first defined here"}}
			continue
		}
		seen[p.Name.Name] = span
		pt[p.Name.Name] = c.resolveType(u, p.Type, nil)
	}
	return pt
}

// dedupe drops exact repeats of a diagnostic (same code, span, message and
// related spans), which a def's parameters can produce once per use.
func dedupe(ds lang.Diagnostics) lang.Diagnostics {
	seen := map[string]bool{}
	out := ds[:0]
	for _, d := range ds {
		k := fmt.Sprintf("%d|%v|%d|%d|%s|%v", d.Code, d.Span, d.Span.Start.Offset, d.Span.End.Offset, d.Message, d.Related)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	return out
}

// Runnable adds to diags, for a file that checks clean but holds no
// stages (a library of schemas and defs), the error PIPE206: a run, or a
// deployment to a cluster, needs something to run.
func Runnable(prog *Program, diags lang.Diagnostics, file string) lang.Diagnostics {
	if diags.HasErrors() || prog == nil || len(prog.Stages) > 0 {
		return diags
	}
	start := lang.Pos{Offset: 0, Line: 1, Column: 1}
	return append(diags, lang.Errorf(lang.NoSource, lang.Span{File: file, Start: start, End: start},
		"the file is a library of schemas and defs: it has no stages to run"))
}
