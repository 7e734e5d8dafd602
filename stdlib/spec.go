package stdlib

import (
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"time"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
)

// Kind is the kind of a component.
type Kind string

const (
	SourceKind    Kind = "source"
	TransformKind Kind = "transform"
	SinkKind      Kind = "sink"
)

// Delivery is a sink's delivery guarantee.
type Delivery string

const (
	ExactlyOnce Delivery = "exactly_once"
	AtLeastOnce Delivery = "at_least_once"
	AtMostOnce  Delivery = "at_most_once"
)

// ParamKind is the kind of value an attribute takes.
type ParamKind string

const (
	StringParam   ParamKind = "string"
	IntParam      ParamKind = "int"
	FloatParam    ParamKind = "float"
	BoolParam     ParamKind = "bool"
	DurationParam ParamKind = "duration" // 250ms, 1m30s
	SizeParam     ParamKind = "size"     // 1MiB, 512B: a unit is required
	EnumParam     ParamKind = "enum"     // an identifier from Enum: json, upsert
	ListParam     ParamKind = "list"     // [Elem, ...]
	MapParam      ParamKind = "map"      // { key = Elem, ... }
	BlockParam    ParamKind = "block"    // name { Block attributes }
	SchemaParam   ParamKind = "schema"   // a schema name: schema = Order
	TimeParam     ParamKind = "time"     // an RFC 3339 timestamp string
	AnyParam      ParamKind = "any"      // any literal
)

// ParamType describes the value an attribute takes.
type ParamType struct {
	Kind  ParamKind
	Elem  *ParamType // ListParam, MapParam
	Enum  []string   // EnumParam: allowed identifiers
	Block []Param    // BlockParam: nested attributes
	// OrEnum lets a value of Kind also be one of these identifiers
	// (start = earliest | latest | "2024-01-01T00:00:00Z").
	OrEnum []string
}

func (t ParamType) String() string {
	switch t.Kind {
	case ListParam:
		return "list<" + t.Elem.String() + ">"
	case MapParam:
		return "map<string, " + t.Elem.String() + ">"
	case EnumParam:
		return joinAlt(t.Enum)
	}
	if len(t.OrEnum) > 0 {
		return joinAlt(t.OrEnum) + " | " + string(t.Kind)
	}
	return string(t.Kind)
}

func joinAlt(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += " | "
		}
		out += v
	}
	return out
}

// Convenience constructors for ParamType.
var (
	String   = ParamType{Kind: StringParam}
	Int      = ParamType{Kind: IntParam}
	Float    = ParamType{Kind: FloatParam}
	Bool     = ParamType{Kind: BoolParam}
	Duration = ParamType{Kind: DurationParam}
	Size     = ParamType{Kind: SizeParam}
	Schema   = ParamType{Kind: SchemaParam}
	Time     = ParamType{Kind: TimeParam}
	AnyValue = ParamType{Kind: AnyParam}
)

// Enum returns an enum type of the given identifiers.
func Enum(values ...string) ParamType { return ParamType{Kind: EnumParam, Enum: values} }

// ListOf returns list<elem>.
func ListOf(elem ParamType) ParamType { return ParamType{Kind: ListParam, Elem: &elem} }

// MapOf returns map<string, elem>.
func MapOf(elem ParamType) ParamType { return ParamType{Kind: MapParam, Elem: &elem} }

// Block returns a nested block of attributes.
func Block(params ...Param) ParamType { return ParamType{Kind: BlockParam, Block: params} }

// Param describes one attribute of a component.
type Param struct {
	Name     string
	Type     ParamType
	Required bool
	// Default is the value used when the attribute is absent, as the Go
	// value a Config holds (see Config); nil for none.
	Default any
	Doc     string
	// Secret marks a credential: a literal value is linted (hard-coded
	// secret), and the value is never printed.
	Secret bool
	// Expr marks a sink attribute that may be set per record with :=
	// (a Kafka key or topic, a NATS subject). The executor evaluates it
	// for each record before Write, into Record.Attrs (see
	// Config.ExprIndex); the expression must have the attribute's type.
	Expr bool
	// SchemaFile marks a string attribute naming a schema file, relative
	// to the declaring file (as `schema X from "…"`): the compiler reads it
	// (PIPE004 when it cannot) and hands CheckInput the record type it
	// declares, a *types.Type with its Wire, in place of the path. At run
	// time the attribute is its path, and the file is not read.
	SchemaFile bool
}

// Spec describes a component to the compiler and builds it for the executor.
type Spec struct {
	Kind    Kind
	Name    string // matches ^[a-z0-9]+(_[a-z0-9]+)*$
	Summary string // one line, for `pipe connectors`
	Params  []Param

	// Delivery lists the guarantees a sink can honour, strongest first.
	// A source that cannot give its records every guarantee lists those
	// it can (a queue that redelivers what was not acknowledged gives
	// at_least_once at best): the compiler rejects a sink downstream of
	// it whose delivery is not listed. Empty: any.
	Delivery []Delivery
	// Bounded reports that the source ends by itself (a file, a count).
	Bounded bool
	// Meta lists the metadata fields a source sets on its records
	// (MetaOffset, MetaTopic, ...): expressions downstream of it may read
	// those as meta.x, and no others.
	Meta []MetaField
	// Schema reports that the component takes `schema = Name` (a source
	// decodes by it; a sink asserts it).
	Schema bool
	// Releases reports that a sink keeps no reference to a batch slice
	// once Write returned nil (it encodes or copies what it keeps): the
	// executor may then reuse the slice for new records.
	Releases bool
	// ReadsRows reports that a sink takes *Row values as they are (it
	// reads no value, or handles rows); other sinks get maps.
	ReadsRows bool
	// Discards reports that a sink drops what it receives (discard): as
	// a dead-letter sink it loses the failed records (a lint).
	Discards bool
	// NoRecordErrors reports that the component never fails one record
	// alone (generate, discard): an on_error policy on its stage has
	// nothing to catch (a lint).
	NoRecordErrors bool
	// Shared reports that several instances of a pipeline (`instances =
	// N`, or several `pipe run` processes) may run the stage at once: a
	// source shares its work out among them (a Kafka source with a group),
	// an exactly_once sink takes over from another instance what it wrote
	// for a source partition that moves (the kafka sink). attrs are the
	// stage's attributes as [Spec.Check] gets them. nil: never.
	Shared func(attrs map[string]any) bool

	// Output returns the type of the records a source emits when it can be
	// told from its attributes alone (generate's fields, a raw format's
	// {value: string}); nil if unknown. Such attributes leave no room for a
	// declared schema: the compiler reports one as PIPE309, unless
	// SchemaInOutput says otherwise.
	Output func(attrs map[string]any) *types.Type
	// SchemaInOutput reports that a source's declared schema types a part
	// of its records, not the records: Output gets it under "schema" and
	// its result is the records' type (postgres_cdc: the rows before and
	// after a change).
	SchemaInOutput bool

	// Result returns the type of the records a transform emits for input
	// records of type in (nil: untyped input, for which it returns nil);
	// an error is reported at the stage. Without Result a transform's
	// output has its input's type.
	Result func(attrs map[string]any, in *types.Type) (*types.Type, error)

	// Check validates a stage's attributes beyond their kinds (conflicts,
	// ranges). It returns one AttrError per problem; the compiler reports
	// each at the attribute's position. attrs holds the attributes set and
	// the defaults of the others; an attribute absent without a default is
	// not in it. The compiler calls Check with the attributes as written
	// (a reference is still its text, ${env:N}), a sink's with the
	// guarantee asked of it under "delivery" (an Ident); the executor
	// calls it again once references are resolved, without "delivery".
	Check func(attrs map[string]any) []AttrError
	// CheckInput, for a sink, validates its attributes against the type
	// of the records it writes: its schema, else the type of the records
	// reaching it; nil when they have no known type. The compiler calls
	// it after Check, so that what the sink would refuse at open for want
	// of a type (a table to create from it) pipe check refuses first.
	CheckInput func(attrs map[string]any, records *types.Type) []AttrError

	NewSource    func(cfg Config) (Source, error)
	NewSink      func(cfg Config) (Sink, error)
	NewTransform func(cfg Config) (Transform, error)
}

// Param returns the spec's parameter called name, or nil.
func (s *Spec) Param(name string) *Param {
	for i := range s.Params {
		if s.Params[i].Name == name {
			return &s.Params[i]
		}
	}
	return nil
}

// AttrError is a problem with one attribute, found by Spec.Check.
type AttrError struct {
	Attr    string // attribute name, dotted for nested blocks ("sasl.mechanism")
	Message string
	// Code is the diagnostic's code; zero reports BadAttributeValue.
	Code lang.Code
}

// Values held by Config.Attrs and Param.Default, by ParamKind:
//
//	string, time       string
//	int                int64
//	float              float64
//	bool               bool
//	duration           time.Duration
//	size               int64 (bytes)
//	enum               Ident
//	list               []any
//	map, block         map[string]any
//	schema             *types.Type (also in Config.Schema)
//	call (retry(...))  *Call
type (
	// Ident is an identifier value: json, upsert, earliest.
	Ident string
	// Call is a call value: retry(max = 5, backoff = 1s).
	Call struct {
		Name string
		Args map[string]any // positional arguments are named "0", "1", ...
	}
)

// Config is what a component constructor receives: one stage's attributes
// (checked by Spec.Values: defaults filled, secrets resolved and converted)
// and its place in the pipeline.
type Config struct {
	Pipeline string
	Stage    string
	Attrs    map[string]any
	// Schema is the declared schema (`schema = X`), or nil.
	Schema *types.Type
	// Input is the type of records reaching a sink (nil: unknown).
	Input *types.Type
	// Delivery is a sink's guarantee.
	Delivery Delivery
	// Task is this instance's index among Tasks instances of the stage.
	Task, Tasks int
	// StateDir is a directory the component may keep local state in.
	StateDir string
	// Instance is the index of this run among the instances of its
	// pipeline (`instances = N` on a cluster; 0 for `pipe run`), and Owner
	// names where it runs (a cluster worker's id; "" for `pipe run`). An
	// exactly_once sink fences earlier runs of the same instance by them.
	Instance int
	Owner    string
	Logger   *slog.Logger
	// Recycler, when not nil, holds batches a source may fill instead of
	// allocating its own (Recycler.Batch).
	Recycler *Recycler
	// Rows tells a source that it may emit *Row values instead of
	// map[string]any: the executor materializes them where needed.
	Rows bool
	// Exprs names the attributes the stage sets per record (attr :=
	// expr), in the order of their values in Record.Attrs.
	Exprs []string
}

// ExprIndex returns the index in Record.Attrs of the value of attribute
// name when the stage sets it per record, else -1. A sink looks it up once
// and reads each record's value with Record.Attr.
func (c Config) ExprIndex(name string) int {
	for i, n := range c.Exprs {
		if n == name {
			return i
		}
	}
	return -1
}

// RecordType is the record type a sink encodes by: the declared schema,
// else the compiler's type of its input when that is a record with
// fields; nil when neither is known.
func (c Config) RecordType() *types.Type {
	if c.Schema != nil {
		return c.Schema
	}
	if c.Input != nil && c.Input.Kind == types.Record && len(c.Input.Fields) > 0 {
		return c.Input
	}
	return nil
}

// Log returns the component's logger: Logger, or one that discards
// everything when Logger is nil.
func (c Config) Log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Has reports whether attribute name is set.
func (c Config) Has(name string) bool { _, ok := c.Attrs[name]; return ok }

// The accessors below read attributes of a checked Config: the executor
// builds every Config from [Spec.Values], so an attribute the spec
// declares holds its param's kind, default applied, and a constructor
// reads it with the accessor of that kind (String for string, time and
// enum attributes, Int for int and size ones). An attribute absent and
// without a default reads as the zero value.

// String returns a string, time or enum attribute.
func (c Config) String(name string) string {
	switch v := c.Attrs[name].(type) {
	case string:
		return v
	case Ident:
		return string(v)
	}
	return ""
}

// Int returns an int or size attribute.
func (c Config) Int(name string) int64 { v, _ := c.Attrs[name].(int64); return v }

// Float returns a float attribute.
func (c Config) Float(name string) float64 { v, _ := c.Attrs[name].(float64); return v }

// Bool returns a bool attribute.
func (c Config) Bool(name string) bool { v, _ := c.Attrs[name].(bool); return v }

// Duration returns a duration attribute.
func (c Config) Duration(name string) time.Duration {
	v, _ := c.Attrs[name].(time.Duration)
	return v
}

// Strings returns a list attribute's string (or identifier) items.
func (c Config) Strings(name string) []string {
	l, _ := c.Attrs[name].([]any)
	out := make([]string, 0, len(l))
	for _, v := range l {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case Ident:
			out = append(out, string(v))
		}
	}
	return out
}

// Block returns a nested block (or map) attribute as a Config sharing c's
// other fields, and whether it was set.
func (c Config) Block(name string) (Config, bool) {
	m, ok := c.Attrs[name].(map[string]any)
	b := c
	b.Attrs = m
	if b.Attrs == nil {
		b.Attrs = map[string]any{}
	}
	return b, ok
}

// Registry holds component specs by kind and name.
type Registry struct {
	specs map[Kind]map[string]*Spec
}

// NewRegistry returns a registry holding specs; it panics on an invalid or
// duplicate spec (a programming error).
func NewRegistry(specs ...*Spec) *Registry {
	r := &Registry{specs: map[Kind]map[string]*Spec{}}
	for _, s := range specs {
		if err := r.Register(s); err != nil {
			panic(err)
		}
	}
	return r
}

// Default is the registry component packages register into from init.
var Default = NewRegistry()

var nameRx = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// Register adds s; it rejects bad names and duplicates.
func (r *Registry) Register(s *Spec) error {
	if !nameRx.MatchString(s.Name) {
		return fmt.Errorf("stdlib: invalid component name %q", s.Name)
	}
	switch s.Kind {
	case SourceKind, TransformKind, SinkKind:
	default:
		return fmt.Errorf("stdlib: component %q has invalid kind %q", s.Name, s.Kind)
	}
	if err := checkDefaults(s.Params); err != nil {
		return fmt.Errorf("stdlib: %s %q: %v", s.Kind, s.Name, err)
	}
	if err := checkMeta(s.Meta); err != nil {
		return fmt.Errorf("stdlib: %s %q: %v", s.Kind, s.Name, err)
	}
	if r.specs[s.Kind] == nil {
		r.specs[s.Kind] = map[string]*Spec{}
	}
	if _, dup := r.specs[s.Kind][s.Name]; dup {
		return fmt.Errorf("stdlib: %s %q registered twice", s.Kind, s.Name)
	}
	r.specs[s.Kind][s.Name] = s
	return nil
}

// MustRegister registers s into Default, panicking on error. Call it from init.
func MustRegister(s *Spec) {
	if err := Default.Register(s); err != nil {
		panic(err)
	}
}

// Lookup returns the spec of kind and name, or nil.
func (r *Registry) Lookup(kind Kind, name string) *Spec {
	return r.specs[kind][name]
}

// Specs returns every spec of kind (all kinds if kind is ""), sorted by kind then name.
func (r *Registry) Specs(kind Kind) []*Spec {
	var out []*Spec
	for k, m := range r.specs {
		if kind != "" && k != kind {
			continue
		}
		for _, s := range m {
			out = append(out, s)
		}
	}
	order := map[Kind]int{SourceKind: 0, TransformKind: 1, SinkKind: 2}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return order[out[i].Kind] < order[out[j].Kind]
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Names returns the names of every spec of kind, sorted.
func (r *Registry) Names(kind Kind) []string {
	var out []string
	for _, s := range r.Specs(kind) {
		out = append(out, s.Name)
	}
	return out
}

// Action is what a stage's on_error does with a record that failed there
// (spec §8.1). The compiler, the plan and the executor share these values.
type Action string

const (
	ActionFail       Action = "fail"        // stop the run
	ActionSkip       Action = "skip"        // drop the record, counted
	ActionDeadLetter Action = "dead_letter" // send the record's envelope to a sink
	ActionRetry      Action = "retry"       // try again, then the policy's then
)

// The built-in transforms: their stages have no Spec of a registered
// component, and the compiler and the executor handle them themselves.
const (
	FilterComponent = "filter"
	MapComponent    = "map"
	RouteComponent  = "route"
)
