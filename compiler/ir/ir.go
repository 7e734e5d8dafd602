package ir

import (
	"time"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// Program is a checked pipeline.
type Program struct {
	File     string
	Pipeline string    // pipeline name ("" when the file names none)
	Span     lang.Span // the pipeline block, if any
	// Checkpoint is the checkpoint interval (default 5s).
	Checkpoint time.Duration
	// Delivery is the pipeline's default delivery ("" when unset).
	Delivery stdlib.Delivery
	// Tasks is the pipeline's default task count (0 when unset).
	Tasks int
	// Instances is how many instances of the pipeline a cluster runs
	// (`instances = N`; 0 when unset, which means 1).
	Instances int
	// HTTP is where `pipe run` serves metrics, health and control.
	HTTP HTTP
	// Stages in topological order: by level (longest path from a source),
	// then by source order.
	Stages []*Stage
	// Edges sorted by From, Port, To, DeadLetter.
	Edges []*Edge
	Tests []*Test
	// Params holds the file's run-time parameters in source order.
	Params []*Param
}

// Param is a run-time parameter: `param name: type = value`.
type Param struct {
	Name string
	Type *types.Type // a scalar or types.SecretType
	// Value is a literal of Type, or a Secret: the text of its references,
	// read and parsed as Type when the run starts.
	Value any
	Span  lang.Span // the name
}

// HTTP configures the server of a running pipeline (empty: none).
type HTTP struct {
	Addr            string
	Token           string // a ${env:…}/${file:…} reference, kept symbolic
	TLSCert, TLSKey string // files
}

// Stage returns the stage called name, or nil.
func (p *Program) Stage(name string) *Stage {
	for _, s := range p.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Stage is one checked node of the pipeline.
type Stage struct {
	Name      string
	Kind      stdlib.Kind
	Component string
	Spec      *stdlib.Spec
	Span      lang.Span // the stage's name
	Decl      lang.Span // the whole declaration
	// Def names the def the stage instantiates ("lib.stamp"), or "".
	Def string
	// Order is the stage's position among the file's stages.
	Order int
	// Tasks is the resolved task count (stage, else pipeline, else 1).
	Tasks int

	// Attrs holds the static attributes in source order, followed by the
	// defaults of absent parameters (Default set) in spec order.
	Attrs []*Attr
	// Exprs holds per-record expressions in source order.
	Exprs []*Expr
	// Keep and Drop list a map stage's field paths.
	Keep []string
	Drop []string
	// Ports lists a route's case ports in order; Else is its fallback port.
	Ports []string
	Else  string
	// Mode is a route's mode (first | all).
	Mode string

	// Schema is the declared schema (`schema = X`) or nil.
	Schema *types.Type
	// Input is the type of records reaching the stage, Output the type it
	// emits; nil means untyped.
	Input  *types.Type
	Output *types.Type

	// Delivery is a sink's resolved guarantee.
	Delivery stdlib.Delivery
	// OnError is the stage's error policy (nil: fail).
	OnError *ErrorPolicy
	// PartitionBy is a sink's partition_by ("" when unset).
	PartitionBy string
	// Params holds a def instance's argument values by parameter name
	// (defaults filled); the values use the Attr value types.
	Params []*Attr
}

// Attr returns the attribute called name, or nil.
func (s *Stage) Attr(name string) *Attr {
	for _, a := range s.Attrs {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Attr is one static attribute. Value has one of these Go types:
//
//	string          string, time
//	Secret          string holding ${env:...} / ${file:...} references
//	int64           int
//	float64         float
//	bool            bool
//	time.Duration   duration
//	Size            size in bytes
//	stdlib.Ident    enum value or bare identifier
//	[]any           list (elements of these types)
//	Map             map literal or nested block, in source order
//	*Call           call value: retry(max = 5)
//	SchemaRef       schema name (the type is Stage.Schema)
//	nil             null
type Attr struct {
	Name    string
	Value   any
	Span    lang.Span // the value (or the parameter's declaration for defaults)
	Default bool      // filled from the spec's default
}

// Secret is a string with ${env:...}/${file:...} references, kept symbolic.
type Secret string

// Size is a byte count.
type Size int64

// SchemaRef names a schema.
type SchemaRef string

// Map is an ordered map or nested block.
type Map []MapEntry

// MapEntry is one entry of a Map.
type MapEntry struct {
	Key   string
	Value any
}

// Get returns the value of key and whether it is present.
func (m Map) Get(key string) (any, bool) {
	for _, e := range m {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// Call is a call value; positional arguments are keyed "0", "1", ...
type Call struct {
	Name string
	Args Map
}

// ExprKind says where an expression sits (the plan's ExprKind values).
type ExprKind string

const (
	WhereExpr  ExprKind = "where"
	CaseExpr   ExprKind = "case"
	AssignExpr ExprKind = "assign"
	AttrExpr   ExprKind = "attr"
)

// Expr is one checked expr-lang expression.
type Expr struct {
	Kind   ExprKind
	Target string // case port, assigned field path or attribute name
	// Source is the expression as written; Exec is the text the executor
	// compiles (Source with def parameters replaced by their values).
	Source string
	Exec   string
	Type   *types.Type
	Span   lang.Span
}

// ErrorPolicy is a stage's on_error.
type ErrorPolicy struct {
	Action  stdlib.Action
	Target  string // dead_letter sink
	Max     int
	Backoff time.Duration
	Then    *ErrorPolicy
}

// Edge is a data edge; DeadLetter edges carry failed records of From to To.
type Edge struct {
	From       string
	Port       string
	To         string
	DeadLetter bool
}

// Test is an inline test.
type Test struct {
	Name   string
	Span   lang.Span
	Clock  string
	Params Map // values of the file's params for the test
	Given  []*Given
	Expect []*Expect
}

// Given feeds records (each a Map) to a source.
type Given struct {
	Source  string
	Span    lang.Span
	Records []Map
}

// Expect is one expectation on a sink or route port.
type Expect struct {
	Target  string
	Span    lang.Span
	Records []Map
	Count   *int
	Empty   bool
	Where   *Expr
}
