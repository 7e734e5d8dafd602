// Package exprs type-checks and compiles the expr-lang expressions of a
// pipe file: filter predicates (where), route cases (when), map output
// fields and per-record sink attributes (:=).
//
// Phase: part of the compiler ([Check]) and of the executor ([Compile]).
// Input: an expression's raw source and a [Context] (where it sits, the
// record type flowing in, def params, an optional annotation). Output of
// [Check]: the inferred result type, a folded constant for predicates, and
// [Issue]s whose offsets are byte offsets into the source. Output of
// [Compile]: a [Program] that runs on the run-time record representation,
// map[string]any (see lang/types).
//
// Invariants: [Check] builds a typed environment from the record type with
// reflect.StructOf, so unknown nested fields are errors; messages never show
// Go types. A [Checker] (one per compilation, not shared between
// goroutines) builds that environment and expr's configuration once per
// distinct context and reuses them, so checking costs little more than
// expr's parse and type-check of each expression; [Check] is a Checker used
// once. [Compile] uses expr's map environment, so top-level field loads
// take expr's fast map path (OpLoadFast), and rewrites nested field reads
// (customer.id) into a direct map index instead of expr's reflection-based
// fetch. Both install the same function library
// (stdlib/fn). A [Program] is safe for concurrent use; a vm.VM passed to
// [Program.Run] belongs to one goroutine. No panic crosses this package's API.
package exprs
