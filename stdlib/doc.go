// Package stdlib holds the contracts between pipe's runtime and its
// components (sources, transforms, sinks), the specs that describe each
// component to the compiler, and the registry that holds them.
//
// A [Spec] is data: the compiler checks a stage's attributes against it
// without constructing anything, so `pipe check` never dials a broker.
// At run time the executor calls the spec's constructor once per task with a
// [Config] whose secrets are resolved and whose defaults are filled.
//
// Component packages (stdlib/core, stdlib/kafka, stdlib/postgres, ...)
// register their specs from init with [MustRegister]; stdlib/all imports them
// all. stdlib imports only lang.
package stdlib
