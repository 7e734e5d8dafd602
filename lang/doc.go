// Package lang holds what every phase of pipe shares: source positions and
// spans, diagnostics and their stable codes.
//
// Phases hand over values: the parser turns bytes into an [ast.File] plus
// [Diagnostics]; the compiler turns files into a checked program plus
// diagnostics; the planner turns the program into a plan. Every diagnostic,
// whatever phase reports it, carries a [Code] from codes.go and a [Span].
package lang
