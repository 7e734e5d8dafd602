package lang

import "fmt"

// Code identifies a kind of diagnostic. Codes are printed as PIPE%03d and are
// stable: a value is never changed or reused. Add new codes at the end of
// their range; retire one by renaming it to _.
//
// Ranges: 0xx syntax, 1xx names and types, 2xx graph and plan,
// 3xx component configuration, 4xx lints (warnings), 9xx internal.
type Code int

func (c Code) String() string { return fmt.Sprintf("PIPE%03d", int(c)) }

// MarshalText makes codes print as PIPE%03d in JSON.
func (c Code) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// ParseCode parses "PIPE104" (or "104") into a Code.
func ParseCode(s string) (Code, bool) {
	var n int
	if _, err := fmt.Sscanf(s, "PIPE%d", &n); err != nil {
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
			return 0, false
		}
	}
	_, ok := codeInfo[Code(n)]
	return Code(n), ok
}

// Syntax (0xx).
const (
	// SyntaxError: the file does not match the grammar.
	//   source s: kafka { topic = }
	SyntaxError Code = 1
	// UnclosedBracket: an expression opens a bracket it never closes.
	//   where (a > 1
	UnclosedBracket Code = 2
	// BadLiteral: a malformed literal (duration, size, number, string escape).
	//   timeout = 5 s
	BadLiteral Code = 3
	// ImportError: an imported file (or a schema file) cannot be read or parsed.
	//   import "lib/missing.pipe" as lib
	ImportError Code = 4
	// BadInterpolation: a malformed ${provider:...} reference.
	//   password = "${vault:x}"
	BadInterpolation Code = 5
)

// Names and types (1xx).
const (
	// UnknownName: an unknown stage, port, schema, type, def or import.
	//   orders -> enrichh
	UnknownName Code = 101
	// DuplicateName: a name defined twice in one scope.
	//   source a: generate {}  source a: stdin {}
	DuplicateName Code = 102
	// ReservedName: a name that is reserved (meta, params, a type name).
	//   source meta: stdin {}
	ReservedName Code = 103
	// UnknownField: an expression or keep/drop names a field the record does not have.
	//   where customer.vipp
	UnknownField Code = 104
	// ExprTypeError: an expression does not type-check.
	//   where amount + "x" > 1
	ExprTypeError Code = 105
	// NotBool: a where/when predicate is not a bool.
	//   where amount
	NotBool Code = 106
	// AnnotationMismatch: a := annotated type differs from the expression's type.
	//   n: int := "x"
	AnnotationMismatch Code = 107
	// FanInMismatch: records merged from several inputs have different schemas.
	//   [orders, refunds] -> sink
	FanInMismatch Code = 108
	// SinkSchemaMismatch: the records reaching a sink do not match its declared schema.
	//   sink s: stdout { schema = Order }
	SinkSchemaMismatch Code = 109
	// BadMapKey: a map type whose key is not string or int.
	//   tags: map<bool, string>
	BadMapKey Code = 110
	// BadDefArgs: a def is used with a missing, unknown or mistyped argument.
	//   transform t: lib.stamp(sytem = "x")
	BadDefArgs Code = 111
	// BadTestRecord: a test's given/expected record does not fit the schema or graph.
	//   given orders [{ amount: "x" }]
	BadTestRecord Code = 112
	// UnknownFunction: an expression calls a function that does not exist.
	//   x := frobnicate(a)
	UnknownFunction Code = 113
	// DivisionByZero: an expression divides by a constant zero.
	//   per_seat := total / 0
	DivisionByZero Code = 114
	// UndeclaredMeta: an expression reads a meta field that a source its
	// records come from does not set (its spec does not declare it).
	//   source s: stdin {}  ...  topic := meta.topic
	UndeclaredMeta Code = 115
	// NullableValue: a value that may be null (an optional field, a ?.
	// chain, nil) used where null fails: an operand, a function argument,
	// the base of a field access, a condition; unless narrowed by a check
	// (x != nil && …), defaulted (x ?? d) or taken by a filter or route case.
	//   where upper(note) == "X"    (note: string?)
	NullableValue Code = 116
	// SecretExposed: a secret parameter used other than as the key of an
	// hmac function: it would reach a record, a log or a decision.
	//   token := params.api_key     (param api_key: secret = "${env:K}")
	SecretExposed Code = 117
)

// Graph and plan (2xx).
const (
	// Cycle: the flow graph has a cycle.
	//   a -> b -> a
	Cycle Code = 201
	// BadEdge: a flow edge that cannot be: into a source, out of a sink, an unknown port.
	//   sink_a -> transform_b
	BadEdge Code = 202
	// DeadLetterNotSink: a dead_letter(...) target is not a sink.
	//   on_error = dead_letter(enrich)
	DeadLetterNotSink Code = 203
	// DeliveryUnsupported: a sink cannot honour the requested delivery guarantee.
	//   sink s: stdout { delivery = exactly_once }
	DeliveryUnsupported Code = 204
	// NoInput: a transform or sink with no input edge, in a flow or not.
	//   sink spare: stdout {}    (in no flow)
	NoInput Code = 205
	// NoSource: a pipeline with no source or no sink; a file with no stages
	// that is not a library (or a library given to pipe run).
	//   (an empty file)
	NoSource Code = 206
	// InstancesUnshared: instances > 1 on a pipeline with a stage that
	// several instances cannot share: a source other than a kafka source
	// with a group, or an exactly_once sink other than kafka.
	//   pipeline p { instances = 2 }   source s: generate { ... }
	InstancesUnshared Code = 207
)

// Component configuration (3xx).
const (
	// UnknownComponent: no registered source/transform/sink of that name.
	//   source s: kafak {}
	UnknownComponent Code = 301
	// UnknownAttribute: an attribute the component does not take.
	//   topik = "x"
	UnknownAttribute Code = 302
	// AttributeType: an attribute value of the wrong kind.
	//   timeout = 5
	AttributeType Code = 303
	// MissingAttribute: a required attribute is missing.
	//   sink k: kafka {}
	MissingAttribute Code = 304
	// BadAttributeValue: a value of the right kind but not allowed (enum, range, conflict).
	//   compression = brotli
	BadAttributeValue Code = 305
	// MisplacedItem: a body item where the component cannot use it (where in a sink).
	//   sink s: stdout { where a > 1 }
	MisplacedItem Code = 306
	// DuplicateAttribute: an attribute set twice in one body.
	DuplicateAttribute Code = 307
	// SecretNotAllowed: a ${env:}/${file:} reference where a secret cannot be
	// used, or a reference inside an expression's string (never resolved).
	//   h := sha256("${env:KEY}" + id)
	SecretNotAllowed Code = 308
	// SchemaRawFormat: a schema on a source whose format cannot carry one
	// (lines, string, bytes: each record is {value}).
	//   source in: stdin { format = lines  schema = Order }
	SchemaRawFormat Code = 309
	// SchemaIncompatible: the schema a sink writes breaks the compatibility
	// rule it declares against a schema file (a pinned registry subject's);
	// the message names the field and its line in the schema files.
	//   compat_with = "schemas/orders-v3.avsc"  compatibility = backward
	SchemaIncompatible Code = 310
)

// Lints (4xx): warnings; `pipe lint --deny` makes them failures and
// `lint.allow = [...]` on a stage silences them there.
const (
	// StageNotInFlow: a source that no flow line uses.
	StageNotInFlow Code = 401
	// DeadEnd: a source or transform whose output goes nowhere.
	DeadEnd Code = 402
	// SinkUnreachable: a sink that no source reaches.
	SinkUnreachable Code = 403
	// PortUnwired: a route port that nothing consumes.
	PortUnwired Code = 404
	// RouteNoElse: a route without an else port drops unmatched records.
	RouteNoElse Code = 405
	// CrossProduct: [a, b] -> [c, d] wires every input to every output.
	CrossProduct Code = 406
	// NoDelivery: a sink without an explicit delivery guarantee.
	NoDelivery Code = 410
	// ConstantPredicate: a filter or route case that is always true or false.
	ConstantPredicate Code = 420
	// DuplicateCase: two route cases with the same condition.
	DuplicateCase Code = 422
	// SkipWithoutDLQ: on_error = skip loses records silently.
	SkipWithoutDLQ Code = 430
	// RetryWithoutThen: retry(...) without then = ... fails the pipeline when retries run out.
	RetryWithoutThen Code = 432
	// DeadLetterDiscards: a dead_letter(...) target that drops what it
	// receives (a discard sink): failed records are lost silently.
	//   on_error = dead_letter(devnull)   (sink devnull: discard {})
	DeadLetterDiscards Code = 433
	// PolicyNeverFires: an on_error policy on a stage that never fails a
	// record: a filter, map or route whose expressions cannot fail, or a
	// component that fails no record alone (generate, discard).
	//   transform f: filter { where amount > 0  on_error = skip }
	PolicyNeverFires Code = 434
	// FieldRetyped: a := gives an existing field a new type.
	FieldRetyped Code = 440
	// ShadowsBuiltin: a field named like an expression builtin (len, now).
	ShadowsBuiltin Code = 441
	// Retired: the lint optional-unchecked, replaced by the error
	// NullableValue (PIPE116).
	_ Code = 450
	// AnyResult: an expression whose type is unknown; annotate it.
	AnyResult Code = 451
	// UntypedSource: a source without a schema: nothing downstream is type-checked.
	UntypedSource Code = 452
	// NonDeterministic: now()/random in a filter or route: replays may differ.
	NonDeterministic Code = 453
	// HardcodedSecret: a credential written as a literal (a secret
	// attribute, a secret param's value, an hmac function's key).
	//   h := hmac_sha256("k3y", user)
	HardcodedSecret Code = 460
	// InsecureTLS: TLS certificate verification switched off.
	InsecureTLS Code = 462
	// Unused: an unused import, def, schema, def param or run-time param.
	Unused Code = 470
	// Untested: a source or sink that no test covers (--require-tests).
	Untested Code = 480
)

// Internal (9xx).
const (
	// Internal: a bug in pipe; please report it with the input.
	Internal Code = 901
)

type codeDoc struct {
	name    string
	summary string
}

var codeInfo = map[Code]codeDoc{
	SyntaxError:         {"syntax-error", "the file does not match the grammar"},
	UnclosedBracket:     {"unclosed-bracket", "an expression opens a bracket it never closes"},
	BadLiteral:          {"bad-literal", "malformed literal (duration, size, number, escape)"},
	ImportError:         {"import-error", "an imported file cannot be read or parsed"},
	BadInterpolation:    {"bad-interpolation", "malformed ${provider:...} reference"},
	UnknownName:         {"unknown-name", "unknown stage, port, schema, type, def or import"},
	DuplicateName:       {"duplicate-name", "a name defined twice"},
	ReservedName:        {"reserved-name", "a reserved name used as a stage, field or schema name"},
	UnknownField:        {"unknown-field", "a field the record does not have"},
	ExprTypeError:       {"expr-type", "expression type error"},
	NotBool:             {"not-bool", "a where/when predicate is not a bool"},
	AnnotationMismatch:  {"annotation-mismatch", "a := annotation differs from the expression's type"},
	FanInMismatch:       {"fan-in-mismatch", "merged inputs have different schemas"},
	SinkSchemaMismatch:  {"sink-schema", "records reaching a sink do not match its schema"},
	BadMapKey:           {"bad-map-key", "map key type is not string or int"},
	BadDefArgs:          {"bad-def-args", "def used with missing, unknown or mistyped arguments"},
	BadTestRecord:       {"bad-test-record", "test record or target does not fit the schema or graph"},
	UnknownFunction:     {"unknown-function", "call of an unknown function"},
	DivisionByZero:      {"division-by-zero", "division by a constant zero"},
	UndeclaredMeta:      {"undeclared-meta", "a meta field a source upstream does not set"},
	NullableValue:       {"nullable-value", "a value that may be null used where null fails"},
	SecretExposed:       {"secret-exposed", "a secret parameter used other than as a key"},
	Cycle:               {"cycle", "the flow graph has a cycle"},
	BadEdge:             {"bad-edge", "an impossible flow edge"},
	DeadLetterNotSink:   {"dead-letter-not-sink", "dead_letter target is not a sink"},
	DeliveryUnsupported: {"delivery-unsupported", "a sink cannot honour the delivery guarantee"},
	NoInput:             {"no-input", "a transform or sink without input"},
	NoSource:            {"no-source", "a pipeline without a source or sink"},
	InstancesUnshared:   {"instances-unshared", "instances > 1 with a stage instances cannot share"},
	UnknownComponent:    {"unknown-component", "no such source, transform or sink"},
	UnknownAttribute:    {"unknown-attribute", "attribute not taken by the component"},
	AttributeType:       {"attribute-type", "attribute value of the wrong kind"},
	MissingAttribute:    {"missing-attribute", "required attribute missing"},
	BadAttributeValue:   {"bad-attribute-value", "attribute value not allowed"},
	MisplacedItem:       {"misplaced-item", "body item the component cannot use"},
	DuplicateAttribute:  {"duplicate-attribute", "attribute set twice"},
	SecretNotAllowed:    {"secret-not-allowed", "secret reference where none may be used"},
	SchemaRawFormat:     {"schema-raw-format", "schema on a source whose format cannot carry one"},
	SchemaIncompatible:  {"schema-incompatible", "sink schema breaks its declared compatibility"},
	StageNotInFlow:      {"stage-not-in-flow", "stage used by no flow"},
	DeadEnd:             {"dead-end", "output that goes nowhere"},
	SinkUnreachable:     {"sink-unreachable", "sink no source reaches"},
	PortUnwired:         {"port-unwired", "route port nothing consumes"},
	RouteNoElse:         {"route-no-else", "route without else drops unmatched records"},
	CrossProduct:        {"cross-product", "[a, b] -> [c, d] cross product"},
	NoDelivery:          {"no-delivery", "sink without explicit delivery guarantee"},
	ConstantPredicate:   {"constant-predicate", "filter or case always true or false"},
	DuplicateCase:       {"duplicate-case", "two route cases with the same condition"},
	SkipWithoutDLQ:      {"skip-without-dlq", "on_error = skip loses records silently"},
	RetryWithoutThen:    {"retry-without-then", "retry without then fails when retries run out"},
	DeadLetterDiscards:  {"dead-letter-discards", "dead-letter sink that drops what it receives"},
	PolicyNeverFires:    {"policy-never-fires", "on_error on a stage that never fails a record"},
	FieldRetyped:        {"field-retyped", ":= gives a field a new type"},
	ShadowsBuiltin:      {"shadows-builtin", "field named like an expression builtin"},
	AnyResult:           {"any-result", "expression of unknown type"},
	UntypedSource:       {"untyped-source", "source without schema"},
	NonDeterministic:    {"non-deterministic", "now()/random in filter or route"},
	HardcodedSecret:     {"hardcoded-secret", "credential written as a literal"},
	InsecureTLS:         {"insecure-tls", "TLS verification switched off"},
	Unused:              {"unused", "unused import, def, schema or param"},
	Untested:            {"untested", "source or sink no test covers"},
	Internal:            {"internal", "internal error"},
}

// Name returns the short kebab-case name of c ("unknown-field").
func (c Code) Name() string { return codeInfo[c].name }

// Summary returns a one-line description of c.
func (c Code) Summary() string { return codeInfo[c].summary }

// IsLint reports whether c is a lint (a warning that can be denied or allowed).
func (c Code) IsLint() bool { return c >= 400 && c < 500 }

// AllCodes returns every defined code in ascending order.
func AllCodes() []Code {
	out := make([]Code, 0, len(codeInfo))
	for c := range codeInfo {
		out = append(out, c)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
