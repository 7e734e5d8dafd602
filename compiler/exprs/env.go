package exprs

import (
	"reflect"
	"strconv"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/fn"
)

var (
	anyGoType      = reflect.TypeOf((*any)(nil)).Elem()
	timeGoType     = reflect.TypeOf(time.Time{})
	durationGoType = reflect.TypeOf(time.Duration(0))
	bytesGoType    = reflect.TypeOf([]byte(nil))
	secretGoType   = reflect.TypeOf(fn.Secret{})
)

// typedEnv is the typed environment of [Check]: a Go struct type built
// with reflect.StructOf from the record type, with the maps needed to turn
// Go types back into pipe types and Go type names into pipe names.
type typedEnv struct {
	typ     reflect.Type                 // the environment struct
	records map[reflect.Type]*types.Type // built struct type -> record type
	names   map[string]string            // struct type String() -> pipe type name
	input   *types.Type
	hasMeta bool
	hasPrm  bool
	// structs, when set, holds the struct types built so far by shape
	// (field names and types, type names left out), shared by the
	// environments of one Checker: reflect.StructOf is costly.
	structs map[string]reflect.Type
}

// metaType is the record type of meta with every field: Check reports
// the ones the context's sources do not declare (Context.Meta) itself.
var metaType = stdlib.MetaType(stdlib.MetaFields())

func newTypedEnv(ctx Context, structs map[string]reflect.Type) *typedEnv {
	e := &typedEnv{
		records: make(map[reflect.Type]*types.Type),
		names:   make(map[string]string),
		input:   ctx.Input,
		structs: structs,
	}
	var fields []*types.Field
	if ctx.Input != nil && ctx.Input.Kind == types.Record {
		fields = append(fields, ctx.Input.Fields...)
	}
	if ctx.Input.Field("meta") == nil {
		fields = append(fields, &types.Field{Name: "meta", Type: metaType})
		e.hasMeta = true
	}
	if ctx.Params != nil && ctx.Input.Field("params") == nil {
		p := *ctx.Params
		p.Optional = false
		if p.Name == "" {
			p.Name = "params"
		}
		fields = append(fields, &types.Field{Name: "params", Type: &p})
		e.hasPrm = true
	}
	e.typ = e.structOf(fields)
	if ctx.Input != nil && ctx.Input.Kind == types.Record {
		// The environment prints as the input type in messages.
		e.names[e.typ.String()] = ctx.Input.String()
		e.records[e.typ] = ctx.Input
	}
	return e
}

// zero returns a zero value of the environment struct.
func (e *typedEnv) zero() any { return reflect.New(e.typ).Elem().Interface() }

func (e *typedEnv) structOf(fields []*types.Field) reflect.Type {
	sf := make([]reflect.StructField, len(fields))
	for i, f := range fields {
		// goType registers nested records even when the struct is cached.
		sf[i] = reflect.StructField{
			Name: "F" + strconv.Itoa(i),
			Type: e.goType(f.Type),
			Tag:  reflect.StructTag(`expr:"` + f.Name + `"`),
		}
	}
	if e.structs == nil {
		return reflect.StructOf(sf)
	}
	var key []byte
	for _, f := range fields {
		key = append(key, f.Name...)
		key = append(key, ':')
		key = typeKey(key, f.Type, false)
		key = append(key, ',')
	}
	if g, ok := e.structs[string(key)]; ok {
		return g
	}
	g := reflect.StructOf(sf)
	e.structs[string(key)] = g
	return g
}

// goType maps a pipe type to the Go type of the typed environment.
func (e *typedEnv) goType(t *types.Type) reflect.Type {
	if t == nil || t.Kind == types.Any {
		return anyGoType
	}
	var g reflect.Type
	switch t.Kind {
	case types.String:
		g = reflect.TypeOf("")
	case types.Int:
		g = reflect.TypeOf(int64(0))
	case types.Float:
		g = reflect.TypeOf(float64(0))
	case types.Bool:
		g = reflect.TypeOf(false)
	case types.Timestamp:
		g = timeGoType
	case types.Bytes:
		g = bytesGoType
	case types.Secret:
		g = secretGoType
	case types.List:
		g = reflect.SliceOf(e.goType(t.Elem))
	case types.Map:
		g = reflect.MapOf(reflect.TypeOf(""), e.goType(t.Elem))
	case types.Record:
		g = e.structOf(t.Fields)
		rec := t.WithOptional(false)
		if _, ok := e.records[g]; !ok {
			e.records[g] = rec
			e.names[g.String()] = rec.String()
		}
	default:
		return anyGoType
	}
	if t.Optional {
		g = reflect.PointerTo(g)
	}
	return g
}

// pipeType maps a Go type seen by expr's checker back to a pipe type.
func (e *typedEnv) pipeType(g reflect.Type) *types.Type {
	if g == nil {
		return types.AnyType
	}
	if r, ok := e.records[g]; ok {
		return r
	}
	switch g {
	case timeGoType:
		return types.TimestampType
	case durationGoType:
		return types.IntType
	case bytesGoType:
		return types.BytesType
	case secretGoType:
		return types.SecretType
	}
	switch g.Kind() {
	case reflect.Pointer:
		return e.pipeType(g.Elem()).WithOptional(true)
	case reflect.String:
		return types.StringType
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return types.IntType
	case reflect.Float32, reflect.Float64:
		return types.FloatType
	case reflect.Bool:
		return types.BoolType
	case reflect.Slice, reflect.Array:
		return types.ListOf(e.pipeType(g.Elem()))
	case reflect.Map:
		if g.Key().Kind() == reflect.String {
			return types.MapOf(e.pipeType(g.Elem()))
		}
	}
	return types.AnyType
}

// recordByGoName returns the record type whose Go struct prints as s.
func (e *typedEnv) recordByGoName(s string) *types.Type {
	for g, r := range e.records {
		if g.String() == s {
			return r
		}
	}
	return nil
}
