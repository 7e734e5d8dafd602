package exprs

import (
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
)

// Context says where an expression sits and what it can see.
type Context struct {
	// Kind is where the expression sits; plan.WhereExpr and plan.CaseExpr
	// must be bool (PIPE106 otherwise).
	Kind plan.ExprKind
	// Input is the record type flowing in; nil means untyped: unknown names
	// are allowed and the result is any.
	Input *types.Type
	// Params holds a def's params as a record type (nil outside a def),
	// seen as params.x.
	Params *types.Type
	// Want is the annotated type (n: int := ...), nil if none; a mismatch
	// is PIPE107.
	Want *types.Type
	// Meta is the type of meta (stdlib.MetaType): the metadata fields the
	// records reaching the expression carry. Reading another of stdlib's
	// metadata fields is PIPE115; nil allows them all.
	Meta *types.Type
}

// Result is what [Check] learns about an expression.
type Result struct {
	// Type is the inferred result type (any when unknown). When the
	// expression types as any and Context.Want is set, Type is Want.
	Type *types.Type
	// Const is set when a bool predicate (where/case) is constant.
	Const *bool
	// UsesNow reports a call of now() or of a random function; NowStart
	// and NowEnd are the byte offsets of the first such call.
	UsesNow          bool
	NowStart, NowEnd int
	// CannotFail reports that evaluating the expression can never fail
	// on a record of the (typed) input: an error policy has nothing to
	// catch from it.
	CannotFail bool
}

// Issue is one finding about an expression. Start and End are byte offsets
// into the expression source (End exclusive).
type Issue struct {
	Start, End int
	Code       lang.Code
	Severity   lang.Severity
	Message    string // lower-case, no final period
	Detail     string // optional hint, e.g. did you mean "vip"?
}

// Options configures [Compile]. The zero value works.
type Options struct {
	// Now is the clock read by now(); nil means time.Now. Tests pin it.
	Now func() time.Time
}
