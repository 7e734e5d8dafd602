// Package plan defines the task plan: the versioned, deterministic JSON form
// of a checked pipeline that `pipe compile` writes and `pipe run` executes.
//
// A plan is self-contained: it holds each stage's component, static
// attributes (defaults filled, secrets kept symbolic as ${env:...}), task
// count, schemas, expression sources with their spans, error policy and
// delivery, and the edges between stages. Building one from the same input
// gives byte-identical JSON.
package plan

import (
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// Version is the plan format version; readers reject other versions.
const Version = 1

// Plan is a compiled pipeline.
type Plan struct {
	Version  int    `json:"version"`
	Pipeline string `json:"pipeline"`
	// Checkpoint is the checkpoint interval in nanoseconds.
	Checkpoint int64 `json:"checkpoint_ns"`
	// Instances is how many instances of the pipeline a cluster runs
	// (omitted: 1).
	Instances int `json:"instances,omitempty"`
	// Stages in topological order (sources first).
	Stages []*Stage `json:"stages"`
	Edges  []*Edge  `json:"edges"`
	// HTTP is where `pipe run` serves metrics, health, status and control
	// (the pipeline block's http attributes); nil: only --http starts it.
	HTTP *HTTP `json:"http,omitempty"`
	// Tests holds the file's inline tests (run by `pipe test`, ignored by `pipe run`).
	Tests []*Test `json:"tests,omitempty"`
	// Params holds the run-time parameters that expressions read as
	// params.x, in source order.
	Params []*Param `json:"params,omitempty"`
}

// Param is a run-time parameter. Its Value is a literal of its type, or a
// SecretValue: the text of its references, which the executor resolves and
// reads as the type when the run starts. The plan never holds the value of
// a reference.
type Param struct {
	Name  string      `json:"name"`
	Type  *types.Type `json:"type"`
	Value *Value      `json:"value"`
	Span  lang.Span   `json:"span"`
}

// HTTP is the server of a running pipeline.
type HTTP struct {
	Addr    string `json:"addr,omitempty"`
	Token   string `json:"token,omitempty"` // a ${env:…}/${file:…} reference, never a value
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
}

// Stage is one node of the plan.
type Stage struct {
	Name      string      `json:"name"`
	Kind      stdlib.Kind `json:"kind"`
	Component string      `json:"component"` // generate, kafka, filter, map, route, ...
	Span      lang.Span   `json:"span"`
	Tasks     int         `json:"tasks"`

	// Attrs holds static attributes by name, defaults filled.
	Attrs map[string]*Value `json:"attrs,omitempty"`
	// Exprs holds per-record expressions in source order.
	Exprs []*Expr `json:"exprs,omitempty"`
	// Keep and Drop list field paths of a map stage (keep applied first).
	Keep []string `json:"keep,omitempty"`
	Drop []string `json:"drop,omitempty"`
	// Ports lists a route's output ports in order: its cases, then else.
	Ports []string `json:"ports,omitempty"`
	Else  string   `json:"else,omitempty"`

	// Schema is the declared schema (`schema = X`), if any.
	Schema *types.Type `json:"schema,omitempty"`
	// Input is the type of records reaching the stage; Output the type it
	// emits. Nil means untyped.
	Input  *types.Type `json:"input,omitempty"`
	Output *types.Type `json:"output,omitempty"`

	Delivery string       `json:"delivery,omitempty"` // sinks
	OnError  *ErrorPolicy `json:"on_error,omitempty"`
	// PartitionBy names the expressions (or "partition") that pick the task
	// of this stage a record goes to; empty keeps source-partition affinity.
	PartitionBy string `json:"partition_by,omitempty"`
}

// ExprKind says where an expression sits.
type ExprKind string

const (
	WhereExpr  ExprKind = "where"  // filter predicate (all are ANDed)
	CaseExpr   ExprKind = "case"   // route case; Target is the port
	AssignExpr ExprKind = "assign" // map output field; Target is the dotted field path
	AttrExpr   ExprKind = "attr"   // per-record attribute (sink key, topic); Target is the attribute
)

// Expr is one expr-lang expression of a stage.
type Expr struct {
	Kind   ExprKind    `json:"kind"`
	Target string      `json:"target,omitempty"`
	Source string      `json:"source"`
	Type   *types.Type `json:"type,omitempty"` // checked result type
	Span   lang.Span   `json:"span"`
}

// ErrorPolicy is a stage's on_error.
type ErrorPolicy struct {
	Action  stdlib.Action `json:"action"`
	Target  string        `json:"target,omitempty"` // dead_letter sink
	Max     int           `json:"max,omitempty"`    // retry
	Backoff int64         `json:"backoff_ns,omitempty"`
	Then    *ErrorPolicy  `json:"then,omitempty"` // retry: what happens when retries run out (default fail)
}

// Edge is a data edge between stages; DeadLetter edges carry failed records
// to a dead-letter sink (From's on_error names To).
type Edge struct {
	From       string `json:"from"`
	Port       string `json:"port,omitempty"` // route port; "" for the main output
	To         string `json:"to"`
	DeadLetter bool   `json:"dead_letter,omitempty"`
}

// ValueKind is the kind of a static Value.
type ValueKind string

const (
	StringValue   ValueKind = "string"
	IntValue      ValueKind = "int"
	FloatValue    ValueKind = "float"
	BoolValue     ValueKind = "bool"
	DurationValue ValueKind = "duration" // Int holds nanoseconds
	SizeValue     ValueKind = "size"     // Int holds bytes
	NullValue     ValueKind = "null"
	IdentValue    ValueKind = "ident" // Str holds the identifier
	ListValue     ValueKind = "list"
	MapValue      ValueKind = "map" // maps and nested blocks; Map keeps source order
	CallValue     ValueKind = "call"
	SchemaValue   ValueKind = "schema" // Str holds the schema name; the type is Stage.Schema
	// SecretValue is a string holding ${env:...}/${file:...} references,
	// kept symbolic in Str; the executor resolves it when a task starts.
	SecretValue ValueKind = "secret"
)

// Value is a static attribute value.
type Value struct {
	Kind  ValueKind   `json:"kind"`
	Str   string      `json:"str,omitempty"`
	Int   int64       `json:"int,omitempty"`
	Float float64     `json:"float,omitempty"`
	Bool  bool        `json:"bool,omitempty"`
	List  []*Value    `json:"list,omitempty"`
	Map   []*MapEntry `json:"map,omitempty"`
	Call  *Call       `json:"call,omitempty"`
}

// MapEntry is one entry of a map value.
type MapEntry struct {
	Key   string `json:"key"`
	Value *Value `json:"value"`
}

// Call is a call value such as retry(max = 5).
type Call struct {
	Name string      `json:"name"`
	Args []*MapEntry `json:"args,omitempty"` // positional args are keyed "0", "1", ...
}

// Test is an inline test: records given to sources, expectations on sinks
// or route ports.
type Test struct {
	Name  string    `json:"name"`
	Span  lang.Span `json:"span"`
	Clock string    `json:"clock,omitempty"` // RFC 3339; pins now()
	// Params holds the test's values of run-time parameters.
	Params []*MapEntry `json:"params,omitempty"`
	Given  []*Given    `json:"given,omitempty"`
	Expect []*Expect   `json:"expect,omitempty"`
}

// Given feeds records to a source in a test.
type Given struct {
	Source  string    `json:"source"`
	Span    lang.Span `json:"span"`
	Records []*Value  `json:"records"` // each a MapValue
}

// Expect is one expectation of a test.
type Expect struct {
	Target  string    `json:"target"` // sink, or route stage.port
	Span    lang.Span `json:"span"`
	Records []*Value  `json:"records,omitempty"` // listed fields must match, in order
	Count   *int      `json:"count,omitempty"`
	Empty   bool      `json:"empty,omitempty"`
	Where   *Expr     `json:"where,omitempty"`
}
