// Package compiler checks a parsed .pipe file and builds its IR.
//
// Phase: AST (lang/ast) → checked IR (compiler/ir). [Compile] resolves
// names (stages, ports, schemas, imports, defs), builds the flow graph,
// checks every stage's attributes against its component's spec from stdlib,
// type-checks every expression (compiler/exprs) against the record type
// flowing into its stage, infers each stage's output type, checks delivery
// guarantees, runs the lints and returns the IR with every diagnostic found,
// sorted. The AST is never modified.
//
// Invariants: one run reports all diagnostics it can find; the returned
// program is nil when any error was reported; panics are recovered and
// reported as PIPE901. Compile does no I/O except reading imported files
// through Config.ReadFile.
package compiler
