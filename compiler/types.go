package compiler

import (
	"path/filepath"
	"slices"
	"strings"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/protobuf"
)

// schemaType returns the record type of schema si, resolving it once.
func (c *checker) schemaType(si *schemaInfo) *types.Type {
	if si.done {
		return si.typ
	}
	if si.resolving {
		c.errorf(lang.UnknownName, si.span, "schema %q refers to itself", si.decl.Name)
		return types.AnyType
	}
	si.resolving = true
	var t *types.Type
	if si.decl.From != nil {
		t = c.fileSchemaType(si.u, si.decl.From)
	} else {
		t = c.recordType(si.u, si.decl.Fields, nil)
	}
	t.Name = si.decl.Name.Name
	if si.u != c.main {
		t.Name = si.decl.Name.Name
	}
	si.typ, si.done, si.resolving = t, true, false
	return t
}

// fileSchemaType reads the schema file of `schema Name from "path"` (a path
// relative to the declaring file) and maps it to a record type: an Avro
// .avsc, a .proto message ("path.proto#pkg.Message") or a JSON Schema
// (.json). A file that cannot be read, parsed or mapped is PIPE004 at the
// path.
func (c *checker) fileSchemaType(u *unit, from *ast.StringLit) *types.Type {
	return c.schemaFileAt(from.Value(), u.nodeSpan(ast.SpanOf(from.Pos, from.EndPos)), nil)
}

// schemaFileAt reads schema file rel, relative to the file of span, where
// its errors are reported.
func (c *checker) schemaFileAt(rel string, span lang.Span, related []lang.Related) *types.Type {
	file, message, hasMessage := strings.Cut(rel, "#")
	path := file
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(span.File), file)
	}
	ext := filepath.Ext(file)
	fail := func(format string, args ...any) *types.Type {
		c.add(lang.Errorf(lang.ImportError, span, format, args...), related)
		return &types.Type{Kind: types.Record}
	}
	switch {
	case ext == ".proto" && (!hasMessage || message == ""):
		return fail("schema file %q: name the message: \"%s#package.Message\"", rel, file)
	case ext != ".proto" && hasMessage:
		return fail("schema file %q: only a .proto file names a message after #", rel)
	case ext == ".proto":
		t, err := protobuf.Compile(path, message, c.readFile)
		if err != nil {
			return fail("schema file %q: %v", rel, unwrapPathErr(err))
		}
		return t
	case ext != ".avsc" && ext != ".json":
		return fail("schema file %q: unknown schema format %q (want .avsc, .proto or .json)", rel, ext)
	}
	src, err := c.readFile(path)
	if err != nil {
		return fail("cannot read schema file %q: %v", rel, unwrapPathErr(err))
	}
	var t *types.Type
	if ext == ".json" {
		t, err = jsonschema.TypeOf(src)
	} else {
		if t, err = avro.LoadFile(path, c.readFile); err == nil {
			t.Wire.File = rel
		}
	}
	if err != nil {
		return fail("schema file %q: %v", rel, err)
	}
	return t
}

// recordType builds a record type from fields, reporting duplicate fields.
func (c *checker) recordType(u *unit, fields []*ast.Field, rel []lang.Related) *types.Type {
	t := &types.Type{Kind: types.Record}
	seen := map[string]lang.Span{}
	for _, f := range fields {
		span := u.identSpan(f.Name)
		if first, dup := seen[f.Name.Name]; dup {
			d := lang.Errorf(lang.DuplicateName, span, "field %q is already defined", f.Name)
			d.Related = []lang.Related{{Span: first, Message: "first defined here"}}
			c.add(d, rel)
			continue
		}
		seen[f.Name.Name] = span
		if f.Name.Name == "meta" {
			c.add(lang.Errorf(lang.ReservedName, span, "field name %q is reserved", f.Name), rel)
		}
		// Imported files are linted when they are checked themselves.
		// count is left out: it is also a keyword of the language
		// (expect ... count N), so a field of that name is a deliberate
		// choice the grammar supports (spec case clean_keyword_field_names).
		if u == c.main && f.Name.Name != "count" && slices.Contains(builtins, f.Name.Name) {
			c.add(lang.Warningf(lang.ShadowsBuiltin, span, "field %q hides the expression builtin %s()", f.Name, f.Name), rel)
		}
		t.Fields = append(t.Fields, &types.Field{Name: f.Name.Name, Type: c.resolveType(u, f.Type, rel)})
	}
	return t
}

// resolveType turns a type expression of unit u into a type.
func (c *checker) resolveType(u *unit, at *ast.Type, rel []lang.Related) *types.Type {
	if at == nil {
		return types.AnyType
	}
	var t *types.Type
	switch {
	case at.List != nil:
		t = types.ListOf(c.resolveType(u, at.List, rel))
	case at.MapKey != nil:
		k := c.resolveType(u, at.MapKey, rel)
		if k.Kind != types.String && k.Kind != types.Int || k.Optional {
			c.add(lang.Errorf(lang.BadMapKey, u.nodeSpan(ast.SpanOf(at.MapKey.Pos, at.MapKey.EndPos)),
				"map key type must be string or int, not %s", k), rel)
		}
		t = types.MapOf(c.resolveType(u, at.MapValue, rel))
	case at.Name != nil:
		t = c.namedType(u, at.Name, rel)
	default:
		t = c.recordType(u, at.Record, rel)
	}
	if at.Optional {
		t = t.WithOptional(true)
	}
	return t
}

// namedType resolves a scalar, schema or alias.Schema name.
func (c *checker) namedType(u *unit, p *ast.Path, rel []lang.Related) *types.Type {
	span := u.nodeSpan(ast.SpanOf(p.Pos, p.EndPos))
	switch len(p.Parts) {
	case 1:
		if k, ok := types.Scalars[p.Parts[0]]; ok {
			return &types.Type{Kind: k}
		}
		if si := u.schemas[p.Parts[0]]; si != nil {
			si.used = true
			return c.schemaType(si)
		}
		d := lang.Errorf(lang.UnknownName, span, "unknown type %q", p.Parts[0])
		cands := slices.Sorted(mapKeys(u.schemas))
		for k := range types.Scalars {
			cands = append(cands, k)
		}
		d.Detail = suggest(p.Parts[0], cands)
		c.add(d, rel)
	case 2:
		iu, ok := c.importOf(u, p.Parts[0], span)
		if !ok {
			c.add(lang.Errorf(lang.UnknownName, span, "unknown import %q", p.Parts[0]), rel)
			return types.AnyType
		}
		if iu == nil {
			return types.AnyType // import failed; already reported
		}
		if si := iu.schemas[p.Parts[1]]; si != nil {
			si.used = true
			return c.schemaType(si)
		}
		d := lang.Errorf(lang.UnknownName, span, "unknown schema %q in %q", p.Parts[1], p.Parts[0])
		d.Detail = suggest(p.Parts[1], slices.Sorted(mapKeys(iu.schemas)))
		c.add(d, rel)
	default:
		c.add(lang.Errorf(lang.UnknownName, span, "unknown type %q", p.String()), rel)
	}
	return types.AnyType
}

// lookupSchema resolves a schema reference (Name or alias.Name) used as an
// attribute value.
func (c *checker) lookupSchema(u *unit, p *ast.Path, rel []lang.Related) (*types.Type, bool) {
	span := u.nodeSpan(ast.SpanOf(p.Pos, p.EndPos))
	switch len(p.Parts) {
	case 1:
		if si := u.schemas[p.Parts[0]]; si != nil {
			si.used = true
			return c.schemaType(si), true
		}
		d := lang.Errorf(lang.UnknownName, span, "unknown schema %q", p.Parts[0])
		d.Detail = suggest(p.Parts[0], slices.Sorted(mapKeys(u.schemas)))
		c.add(d, rel)
	case 2:
		t := c.namedType(u, p, rel)
		return t, t.Kind == types.Record
	default:
		c.add(lang.Errorf(lang.UnknownName, span, "unknown schema %q", p.String()), rel)
	}
	return nil, false
}

// pathType returns the type at a dotted field path of t, or nil.
func pathType(t *types.Type, path []string) *types.Type {
	for _, p := range path {
		if t == nil || t.Kind != types.Record {
			return nil
		}
		f := t.Field(p)
		if f == nil {
			return nil
		}
		t = f.Type
	}
	return t
}

// withField returns a copy of record t with the field at path set to ft
// (intermediate records are created or copied; a new field goes last).
func withField(t *types.Type, path []string, ft *types.Type) *types.Type {
	var out types.Type
	if t != nil && t.Kind == types.Record {
		out = *t
	} else {
		out = types.Type{Kind: types.Record}
	}
	out.Name = ""
	out.Fields = slices.Clone(out.Fields)
	nt := ft
	if len(path) > 1 {
		var inner *types.Type
		if f := out.Field(path[0]); f != nil {
			inner = f.Type
		}
		nt = withField(inner, path[1:], ft)
	}
	for i, f := range out.Fields {
		if f.Name == path[0] {
			out.Fields[i] = &types.Field{Name: f.Name, Type: nt}
			return &out
		}
	}
	out.Fields = append(out.Fields, &types.Field{Name: path[0], Type: nt})
	return &out
}

// withoutField returns a copy of record t without the field at path.
func withoutField(t *types.Type, path []string) *types.Type {
	if t == nil || t.Kind != types.Record {
		return t
	}
	out := *t
	out.Name = ""
	out.Fields = nil
	for _, f := range t.Fields {
		if f.Name != path[0] {
			out.Fields = append(out.Fields, f)
			continue
		}
		if len(path) > 1 {
			out.Fields = append(out.Fields, &types.Field{Name: f.Name, Type: withoutField(f.Type, path[1:])})
		}
	}
	return &out
}

// keepFields returns record t restricted to the given paths, in t's order.
func keepFields(t *types.Type, paths [][]string) *types.Type {
	out := &types.Type{Kind: types.Record}
	for _, f := range t.Fields {
		var subs [][]string
		whole := false
		for _, p := range paths {
			if p[0] != f.Name {
				continue
			}
			if len(p) == 1 {
				whole = true
			} else {
				subs = append(subs, p[1:])
			}
		}
		switch {
		case whole:
			out.Fields = append(out.Fields, f)
		case len(subs) > 0 && f.Type.Kind == types.Record:
			out.Fields = append(out.Fields, &types.Field{Name: f.Name, Type: keepFields(f.Type, subs)})
		}
	}
	return out
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// narrow returns record t with the fields at the dotted paths made
// non-optional, their parent records too: what a filter or route case
// that proves them non-null lets through. Other paths are ignored.
func narrow(t *types.Type, paths []string) *types.Type {
	for _, p := range paths {
		if n := narrowPath(t, strings.Split(p, ".")); n != nil {
			t = n
		}
	}
	return t
}

// narrowPath returns t with the field at path non-optional, or nil when t
// has no such field.
func narrowPath(t *types.Type, path []string) *types.Type {
	if t == nil || t.Kind != types.Record {
		return nil
	}
	i := slices.IndexFunc(t.Fields, func(f *types.Field) bool { return f.Name == path[0] })
	if i < 0 {
		return nil
	}
	ft := t.Fields[i].Type.WithOptional(false)
	if len(path) > 1 {
		if ft = narrowPath(ft, path[1:]); ft == nil {
			return nil
		}
	}
	if ft == t.Fields[i].Type {
		return t
	}
	out := *t
	out.Fields = slices.Clone(t.Fields)
	out.Fields[i] = &types.Field{Name: path[0], Type: ft}
	return &out
}

// widen returns the type of the values of a and b when they differ at
// most in which values are optional (inputs of a fan-in, one narrowed by a
// filter or route case): optional where either is. It returns nil when
// they differ otherwise.
func widen(a, b *types.Type) *types.Type {
	if a == nil || b == nil || a.Kind != b.Kind {
		return nil
	}
	out := *a
	out.Optional = a.Optional || b.Optional
	switch a.Kind {
	case types.List, types.Map:
		if out.Elem = widen(a.Elem, b.Elem); out.Elem == nil {
			return nil
		}
	case types.Record:
		if len(a.Fields) != len(b.Fields) {
			return nil
		}
		out.Fields = make([]*types.Field, len(a.Fields))
		for i, f := range a.Fields {
			wt := widen(f.Type, b.Fields[i].Type)
			if f.Name != b.Fields[i].Name || wt == nil {
				return nil
			}
			out.Fields[i] = &types.Field{Name: f.Name, Type: wt}
		}
	}
	return &out
}
