package compiler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/exprs"
	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// builtins are expression builtins a field name would hide.
var builtins = []string{
	"abs", "all", "any", "ceil", "concat", "count", "date", "duration", "filter", "find",
	"first", "float", "floor", "fromJSON", "get", "groupBy", "hasPrefix", "hasSuffix",
	"indexOf", "int", "join", "keys", "last", "len", "lower", "map", "max", "mean",
	"median", "min", "none", "now", "one", "reduce", "repeat", "replace", "reverse",
	"round", "sort", "split", "string", "sum", "toJSON", "trim", "type", "upper", "values",
}

// flowTypes computes each stage's input and output types in topological
// order and checks its expressions against them.
func (c *checker) flowTypes(topo []*stage) {
	preds, ins := map[string][]*edge{}, map[string][]*edge{}
	for _, e := range c.edges {
		if !e.dl {
			preds[e.to] = append(preds[e.to], e)
		}
		ins[e.to] = append(ins[e.to], e)
	}
	for _, st := range topo {
		if !st.ok {
			continue
		}
		c.inputType(st, preds[st.name])
		c.flowMeta(st, ins[st.name])
		switch {
		case st.kind == stdlib.SourceKind:
			c.sourceType(st)
			c.schemaFormat(st)
		case st.component == "filter":
			// The wheres run in order until one fails: each sees what
			// the earlier ones prove.
			st.out = st.in
			for _, w := range st.wheres {
				c.checkExpr(st, w, st.out)
				st.out = narrow(st.out, exprs.NonNull(w.e.Text, true))
			}
		case st.component == "route":
			st.out = st.in
			st.portOut = c.routeTypes(st)
		case st.component == "map":
			c.mapType(st)
		case st.kind == stdlib.SinkKind:
			st.out = nil
			for _, ae := range st.attrExpr {
				c.checkExpr(st, ae, st.in)
			}
			c.checkPartitionBy(st)
			c.sinkChecks(st)
			c.schemaFormat(st)
		case st.spec.Result != nil:
			c.transformResult(st)
		default:
			// A transform component without compiler semantics passes
			// records through unchanged.
			st.out = st.in
		}
	}
}

// metaOrigin is where records come from, for the metadata they carry: a
// source stage, or the envelopes of dead-letter edges.
type metaOrigin struct {
	what   string // source "in" (stdin)
	fields []stdlib.MetaField
	// delivery lists the guarantees a source gives its records (its
	// spec's Delivery); empty: any.
	delivery []stdlib.Delivery
}

// flowMeta collects the origins of st's records from its input edges and
// sets the type of meta in its expressions: the fields every origin sets
// (nil, all fields, when it has no input).
func (c *checker) flowMeta(st *stage, in []*edge) {
	if st.kind == stdlib.SourceKind {
		st.metaFrom = []metaOrigin{{fmt.Sprintf("source %q (%s)", st.name, st.component), st.spec.Meta, st.spec.Delivery}}
	}
	for _, e := range in {
		from := []metaOrigin{{"dead-letter envelopes", stdlib.DeadLetterMeta(), nil}}
		if !e.dl {
			from = c.stages[e.from].metaFrom
		}
		for _, o := range from {
			if !slices.ContainsFunc(st.metaFrom, func(x metaOrigin) bool { return x.what == o.what }) {
				st.metaFrom = append(st.metaFrom, o)
			}
		}
	}
	if len(st.metaFrom) == 0 {
		return
	}
	var fields []stdlib.MetaField
	for _, f := range stdlib.MetaFields() {
		all := true
		for _, o := range st.metaFrom {
			all = all && slices.ContainsFunc(o.fields, func(g stdlib.MetaField) bool { return g.Name == f.Name })
		}
		if all {
			fields = append(fields, f)
		}
	}
	st.meta = stdlib.MetaType(fields)
}

// metaDetail says which metadata st's records carry, by origin.
func (st *stage) metaDetail() string {
	parts := make([]string, len(st.metaFrom))
	for i, o := range st.metaFrom {
		names := make([]string, len(o.fields))
		for j, f := range o.fields {
			names[j] = "meta." + f.Name
		}
		parts[i] = o.what + " sets " + strings.Join(names, ", ")
		if len(names) == 0 {
			parts[i] = o.what + " sets no metadata"
		}
	}
	return strings.Join(parts, "; ")
}

// routeTypes checks the cases of route st and returns the type of the
// records on each port: the input narrowed by what the port's case proves
// when it holds and, with mode = first, what every earlier case proves by
// failing (it runs only then, so its expression sees that too); the else
// port gets what every case proves by failing.
func (c *checker) routeTypes(st *stage) map[string]*types.Type {
	out := map[string]*types.Type{}
	var failed []string // proven when every case so far fails
	for _, cs := range st.cases {
		in := st.in
		if st.mode != "all" {
			in = narrow(st.in, failed)
		}
		c.checkExpr(st, cs, in)
		out[cs.target] = narrow(in, exprs.NonNull(cs.e.Text, true))
		failed = append(failed, exprs.NonNull(cs.e.Text, false)...)
	}
	if st.elsePort != "" {
		out[st.elsePort] = narrow(st.in, failed)
	}
	return out
}

// outType is the type of the records st sends on port ("" for its only
// output).
func (st *stage) outType(port string) *types.Type {
	if t, ok := st.portOut[port]; ok {
		return t
	}
	return st.out
}

func (c *checker) inputType(st *stage, in []*edge) {
	if st.kind == stdlib.SourceKind || len(in) == 0 {
		st.in, st.typed = nil, st.kind == stdlib.SourceKind
		return
	}
	st.typed = true
	var first *types.Type
	var firstFrom string
	for i, e := range in {
		from := c.stages[e.from]
		t := from.outType(e.port)
		if !from.typed || t == nil {
			st.typed = false
			continue
		}
		if i == 0 || first == nil {
			first, firstFrom = t, e.from
			continue
		}
		if w := widen(first, t); w != nil {
			first = w
			continue
		}
		if !types.Equal(first, t) {
			d := c.errorf(lang.FanInMismatch, e.span, "%q and %q flow into %q with different types", firstFrom, e.from, st.name)
			d.Detail = fmt.Sprintf("%s: %s; %s: %s", firstFrom, first, e.from, t)
		}
	}
	if st.typed {
		st.in = first
	} else {
		st.in = nil
	}
}

func (c *checker) sourceType(st *stage) {
	var fixed *types.Type // the type the attributes alone give
	if st.spec.Output != nil {
		fixed = st.spec.Output(plainAttrs(st.attrs, st.schema))
	}
	switch {
	case st.schema != nil && st.spec.SchemaInOutput && fixed != nil:
		st.out = fixed
	case st.schema != nil:
		st.out = st.schema
		if fixed != nil {
			c.rawFormatSchema(st, fixed)
		}
	default:
		st.out = fixed
	}
	if st.out == nil {
		st.typed = false
		if st.flatSeen["schema"] != nil {
			return // schema set but wrong: reported where it is set
		}
		d := c.lint(st, lang.UntypedSource, st.span, st.instRel, "source %q has no schema: nothing downstream is type-checked", st.name)
		if st.spec.Schema {
			d.Detail = "set schema = Name"
		}
	}
}

// schemaFormat reports a format that encodes by a schema file (protobuf,
// json_schema) on a stage whose records' type was not read from such a
// file: the schema (a sink's, else its input's) must be.
func (c *checker) schemaFormat(st *stage) {
	var format string
	for _, a := range st.attrs {
		if a.Name == "format" {
			format = plainString(a.Value)
		}
	}
	want := map[string]string{"protobuf": `a .proto message: schema X from "x.proto#pkg.Message"`,
		"json_schema": `a JSON Schema: schema X from "x.schema.json"`}[format]
	if want == "" {
		return
	}
	records := st.schema
	if records == nil && st.kind == stdlib.SinkKind && st.typed {
		records = st.in
	}
	if records != nil && records.Wire != nil && records.Wire.Format == format {
		return
	}
	span, rel := st.span, st.instRel
	if fa := st.flatSeen["format"]; fa != nil {
		span, rel = fa.span, fa.rel()
	}
	d := lang.Errorf(lang.BadAttributeValue, span, "format %s needs a schema read from %s", format, want)
	d.Detail = "set schema = X on the stage"
	c.add(d, rel)
}

// rawFormatSchema reports a schema on a source whose attributes fix its
// records' type: a raw format, whose records are {value: ...} whatever the
// schema says.
func (c *checker) rawFormatSchema(st *stage, fixed *types.Type) {
	span, rel := st.span, st.instRel
	if fa := st.flatSeen["format"]; fa != nil {
		span, rel = fa.span, fa.rel()
	} else if fa := st.flatSeen["schema"]; fa != nil {
		span, rel = fa.span, fa.rel()
	}
	format := "format"
	for _, a := range st.attrs {
		if a.Name == "format" {
			format = fmt.Sprintf("format %s", plainString(a.Value))
		}
	}
	d := lang.Errorf(lang.SchemaRawFormat, span, "%s cannot carry a schema: its records are %s", format, fixed)
	d.Detail = "use format = json to decode by the schema, or remove the schema"
	if fa := st.flatSeen["schema"]; fa != nil && span != fa.span {
		rel = append(slices.Clone(rel), lang.Related{Span: fa.span, Message: "schema set here"})
	}
	c.add(d, rel)
}

// mapType computes a map's output: (input, or only its keep fields) - drop
// + := fields, each := reading the input.
func (c *checker) mapType(st *stage) {
	in := st.in
	typed := st.typed && in != nil && in.Kind == types.Record
	for _, ps := range [][]*pathItem{st.keep, st.drop} {
		for _, p := range ps {
			if typed && pathType(in, p.path) == nil {
				d := lang.Errorf(lang.UnknownField, p.span, "field %q does not exist in %s", strings.Join(p.path, "."), in)
				d.Detail = suggest(p.path[len(p.path)-1], fieldNames(pathType(in, p.path[:len(p.path)-1])))
				c.add(d, p.vc.rel)
			}
		}
	}
	if !typed {
		for _, a := range st.assigns {
			c.checkExpr(st, a, nil)
		}
		st.out = nil
		return
	}
	out := in
	if len(st.keep) > 0 {
		var paths [][]string
		for _, k := range st.keep {
			paths = append(paths, k.path)
		}
		out = keepFields(in, paths)
	} else {
		cp := *in
		out = &cp
	}
	for _, d := range st.drop {
		out = withoutField(out, d.path)
	}
	for _, a := range st.assigns {
		t := c.checkExpr(st, a, in)
		if a.want != nil {
			t = a.want
		}
		if t == nil {
			t = types.AnyType
		}
		if old := pathType(in, a.path); old != nil && !types.Equal(old.WithOptional(false), t.WithOptional(false)) &&
			t.Kind != types.Any && old.Kind != types.Any {
			c.lint(st, lang.FieldRetyped, a.span, a.vc.rel, "field %q changes type from %s to %s", a.target, old, t)
		}
		last := a.path[len(a.path)-1]
		if slices.Contains(builtins, last) {
			c.lint(st, lang.ShadowsBuiltin, a.span, a.vc.rel, "field %q hides the expression builtin %s()", a.target, last)
		}
		out = withField(out, a.path, t)
	}
	out.Name = ""
	st.out = out
}

func fieldNames(t *types.Type) []string {
	if t == nil {
		return nil
	}
	out := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		out[i] = f.Name
	}
	return out
}

// checkExpr type-checks one expression and records it; it returns the
// result type (nil when unknown).
func (c *checker) checkExpr(st *stage, ei *exprItem, in *types.Type) *types.Type {
	u := ei.vc.u
	start := ei.e.Pos.Offset
	text := ei.e.Text
	ctx := exprs.Context{Kind: plan.ExprKind(ei.kind), Input: in, Want: ei.want, Meta: st.meta}
	var attrType *types.Type // the type a sink attribute's := must have
	if ei.kind == ir.AttrExpr && ei.want == nil {
		if p := st.spec.Param(ei.target); p != nil {
			attrType = exprType(p.Type)
			ctx.Want = attrType
		}
	}
	var defParams *types.Type
	if ei.vc.params != nil {
		defParams = st.paramType
		// Every declared parameter counts, bound or not: an argument
		// error is reported at the use site, not as an unused parameter.
		if ei.vc.def != nil && st.paramType != nil {
			for _, f := range st.paramType.Fields {
				if refersToParam(text, f.Name) {
					ei.vc.def.paramUsed[f.Name] = true
				}
			}
		}
	}
	ctx.Params = c.paramsType(defParams)
	c.useParams(text, ei.vc.def)
	res, issues := c.exprs.Check(text, ctx)
	failed := false
	for _, is := range issues {
		if is.Severity == 0 || is.Severity == lang.Error {
			failed = true
		}
		span := u.lines.Span(start+is.Start, start+max(is.End, is.Start))
		d := lang.Diagnostic{Severity: is.Severity, Code: is.Code, Span: span, Message: is.Message, Detail: is.Detail}
		if d.Severity == 0 {
			d.Severity = lang.Error
		}
		if d.Severity == lang.Warning && st.allow[d.Code] {
			continue
		}
		if d.Code == lang.UndeclaredMeta {
			d.Detail = st.metaDetail()
		}
		if attrType != nil && d.Code == lang.AnnotationMismatch {
			d.Code = lang.AttributeType
			d.Message = fmt.Sprintf("attribute %q takes %s, not %s", ei.target, attrType.WithOptional(false), res.Type)
		}
		c.add(d, ei.vc.rel)
	}
	st.mayFail = st.mayFail || failed || !res.CannotFail
	t := res.Type
	exprSpan := u.lines.Span(start, start+len(text))
	switch ei.kind {
	case ir.WhereExpr, ir.CaseExpr:
		if res.Const != nil {
			what := "filter condition"
			if ei.kind == ir.CaseExpr {
				what = fmt.Sprintf("case %q", ei.target)
			}
			c.lint(st, lang.ConstantPredicate, exprSpan, ei.vc.rel, "%s is always %t", what, *res.Const)
		}
		if res.UsesNow {
			c.lint(st, lang.NonDeterministic, u.lines.Span(start+res.NowStart, start+res.NowEnd), ei.vc.rel, "now() or a random function in a %s: replays may route records differently", st.component)
		}
	case ir.AssignExpr, ir.AttrExpr:
		if in != nil && ei.want == nil && !failed && (t == nil || t.Kind == types.Any) {
			c.lint(st, lang.AnyResult, exprSpan, ei.vc.rel, "the type of %q is unknown", ei.target).
				Detail = fmt.Sprintf("annotate it: %s: <type> := ...", ei.target)
		}
	}
	if t != nil && t.Kind == types.Any && ei.want == nil {
		t = nil
	}
	if ei.want != nil {
		t = ei.want
	}
	exec := text
	if ei.vc.params != nil {
		exec = substituteParams(text, ei.vc.params, st.paramType)
	}
	st.exprs = append(st.exprs, &ir.Expr{Kind: ei.kind, Target: ei.target, Source: text, Exec: exec, Type: t, Span: exprSpan})
	return t
}

// checkPartitionBy checks a sink's partition_by, an expression the
// executor evaluates per record (a field name, usually), against the
// sink's input; its errors are reported at the attribute's value.
func (c *checker) checkPartitionBy(st *stage) {
	fa := st.flatSeen["partition_by"]
	if fa == nil || st.partitionBy == "" || st.partitionBy == "partition" {
		return
	}
	in := st.in
	if !st.typed {
		in = nil
	}
	_, issues := c.exprs.Check(st.partitionBy, exprs.Context{Kind: plan.AttrExpr, Input: in, Meta: st.meta})
	for _, is := range issues {
		if is.Severity == lang.Error {
			d := lang.Errorf(is.Code, fa.span, "partition_by %q: %s", st.partitionBy, is.Message)
			d.Detail = is.Detail
			c.add(d, fa.rel())
		}
	}
}

func (c *checker) sinkChecks(st *stage) {
	if st.schema != nil && st.typed && st.in != nil {
		if err := types.AssignableTo(st.in, st.schema); err != nil {
			d := c.errorf(lang.SinkSchemaMismatch, st.span, "records reaching sink %q do not match schema %s: %v", st.name, st.schema.Name, err)
			d.Detail = "incoming: " + st.in.String()
		}
	}
	if st.spec.CheckInput != nil {
		records := st.schema
		if records == nil && st.typed {
			records = st.in
		}
		attrs := plainAttrs(st.attrs, st.schema)
		for _, p := range st.spec.Params {
			fa := st.flatSeen[p.Name]
			if path, ok := attrs[p.Name].(string); ok && p.SchemaFile && fa != nil {
				attrs[p.Name] = c.schemaFileAt(path, fa.span, fa.rel())
			}
		}
		for _, e := range st.spec.CheckInput(attrs, records) {
			span, rel := st.span, st.instRel
			if fa := st.flatSeen[e.Attr]; fa != nil {
				span, rel = fa.span, fa.rel()
			}
			code := e.Code
			if code == 0 {
				code = lang.BadAttributeValue
			}
			c.add(lang.Errorf(code, span, "%s", e.Message), rel)
		}
	}
	del := c.deliveryOf(st)
	st.delivery = del
	if len(st.spec.Delivery) > 0 && !slices.Contains(st.spec.Delivery, del) {
		span := st.span
		if fa := st.flatSeen["delivery"]; fa != nil {
			span = fa.span
		} else if c.pipelineDelivery.IsValid() {
			span = st.span
		}
		names := make([]string, len(st.spec.Delivery))
		for i, d := range st.spec.Delivery {
			names[i] = string(d)
		}
		d := lang.Errorf(lang.DeliveryUnsupported, span, "sink %q (%s) cannot honour %s", st.name, st.component, del)
		d.Detail = fmt.Sprintf("%s supports %s", st.component, strings.Join(names, ", "))
		if !st.deliverySet && c.prog.Delivery != "" {
			d.Related = []lang.Related{{Span: c.pipelineDelivery, Message: "pipeline default set here"}}
		}
		c.add(d, st.instRel)
	}
	for _, o := range st.metaFrom {
		if len(o.delivery) == 0 || slices.Contains(o.delivery, del) {
			continue
		}
		span := st.span
		if fa := st.flatSeen["delivery"]; fa != nil {
			span = fa.span
		}
		d := lang.Errorf(lang.DeliveryUnsupported, span, "sink %q cannot honour %s: its records come from %s, which gives %s at best",
			st.name, del, o.what, o.delivery[0])
		d.Detail = "a source that cannot be read again from a position (a queue redelivers what was not acknowledged) limits every sink it feeds"
		if !st.deliverySet && c.prog.Delivery != "" {
			d.Related = []lang.Related{{Span: c.pipelineDelivery, Message: "pipeline default set here"}}
		}
		c.add(d, st.instRel)
	}
	if !st.deliverySet && c.prog.Delivery == "" {
		c.lint(st, lang.NoDelivery, st.span, st.instRel, "sink %q has no explicit delivery guarantee (at_least_once assumed)", st.name).
			Detail = "set delivery = exactly_once | at_least_once | at_most_once on the sink or in pipeline {}"
	}
}

// exprType is the type of the values of an attribute of type pt as an
// expression gives them, null standing for unset; nil when any value goes.
func exprType(pt stdlib.ParamType) *types.Type {
	var t *types.Type
	switch pt.Kind {
	case stdlib.StringParam, stdlib.EnumParam, stdlib.TimeParam:
		t = types.StringType
	case stdlib.IntParam, stdlib.SizeParam:
		t = types.IntType
	case stdlib.FloatParam:
		t = types.FloatType
	case stdlib.BoolParam:
		t = types.BoolType
	case stdlib.ListParam, stdlib.MapParam:
		elem := exprType(*pt.Elem)
		if elem == nil {
			elem = types.AnyType
		}
		if pt.Kind == stdlib.ListParam {
			t = types.ListOf(elem.WithOptional(false))
		} else {
			t = types.MapOf(elem.WithOptional(false))
		}
	default:
		return nil
	}
	return t.WithOptional(true)
}

// refersToParam reports whether expression src reads params.name.
func refersToParam(src, name string) bool {
	found := false
	scanParams(src, func(start, end int, n string) {
		if n == name {
			found = true
		}
	})
	return found
}

// scanParams calls fn for every params.NAME outside string literals.
func scanParams(src string, fn func(start, end int, name string)) {
	for i := 0; i < len(src); i++ {
		if ch := src[i]; ch == '"' || ch == '\'' || ch == '`' {
			i = exprs.StringEnd(src, i)
			continue
		}
		if !strings.HasPrefix(src[i:], "params.") || (i > 0 && (isIdentByte(src[i-1]) || src[i-1] == '.')) {
			continue
		}
		j := i + len("params.")
		k := j
		for k < len(src) && isIdentByte(src[k]) {
			k++
		}
		if k > j {
			fn(i, k, src[j:k])
			i = k - 1
		}
	}
}

// substituteParams replaces params.NAME by the literal value of NAME, of
// its type in ptype (the params record), so the executor compiles a
// self-contained expression.
func substituteParams(src string, params map[string]any, ptype *types.Type) string {
	var b strings.Builder
	last := 0
	scanParams(src, func(start, end int, name string) {
		v, ok := params[name]
		if !ok {
			return
		}
		var t *types.Type
		if f := ptype.Field(name); f != nil {
			t = f.Type
		}
		b.WriteString(src[last:start])
		b.WriteString("(" + exprLiteral(v, t) + ")")
		last = end
	})
	b.WriteString(src[last:])
	return b.String()
}

// exprLiteral writes v, a value of type t (nil: unknown), as an expr-lang
// literal. A timestamp, held as its RFC 3339 text, becomes a call of
// exprs.TimeFunc.
func exprLiteral(v any, t *types.Type) string {
	var elem *types.Type
	if t != nil {
		elem = t.Elem
	}
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		if t != nil && t.Kind == types.Timestamp {
			return exprs.TimeFunc + "(" + strconv.Quote(v) + ")"
		}
		return strconv.Quote(v)
	case ir.Secret:
		return strconv.Quote(string(v))
	case stdlib.Ident:
		return strconv.Quote(string(v))
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEn") {
			s += ".0"
		}
		return s
	case bool:
		return strconv.FormatBool(v)
	case time.Duration:
		return "duration(" + strconv.Quote(v.String()) + ")"
	case ir.Size:
		return strconv.FormatInt(int64(v), 10)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = exprLiteral(x, elem)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case ir.Map:
		parts := make([]string, len(v))
		for i, e := range v {
			ft := elem
			if f := t.Field(e.Key); f != nil {
				ft = f.Type
			}
			parts[i] = strconv.Quote(e.Key) + ": " + exprLiteral(e.Value, ft)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return strconv.Quote(fmt.Sprint(v))
}

// transformResult computes a transform component's output type from its
// spec; an error makes the rest of the flow untyped.
func (c *checker) transformResult(st *stage) {
	in := st.in
	if !st.typed {
		in = nil
	}
	out, err := st.spec.Result(plainAttrs(st.attrs, st.schema), in)
	if err != nil {
		c.errorf(lang.BadAttributeValue, st.span, "%s %q: %v", st.component, st.name, err)
		st.typed, st.out = false, nil
		return
	}
	st.out = out
	if out == nil {
		st.typed = false
	}
}

func isIdentByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
