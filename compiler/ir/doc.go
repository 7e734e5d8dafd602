// Package ir is the checked, immutable intermediate form of a pipeline.
//
// Phase: the compiler (package compiler) builds a [Program] from a parsed
// file once every name, attribute, edge and expression has been checked;
// compiler/plan turns it into the versioned JSON plan. The AST is never
// modified: the IR holds its own values and points back at source spans.
//
// Invariants: a Program is only built from input without errors; stages are
// in topological order (sources first, source order within a level); edges
// are sorted; attribute values use the Go types listed on [Attr]. Nothing in
// a Program is mutated after Compile returns, so it may be shared freely.
//
// ir imports lang, lang/types and stdlib only; it never imports the
// compiler or the plan package.
package ir
