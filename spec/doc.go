// Package spec is the language reference of pipe and its conformance suite.
//
// Role: documentation checked by tests. spec.md is the normative reference
// of the .pipe language; conformance/*.txtar are cases of one input each
// (main.pipe plus imported files) with the diagnostics the compiler must
// report, as codes and spans, and for some the plan it must build. The
// package's tests compile every case and every code block of spec.md with
// the real compiler and component registry (stdlib/all), so the reference
// cannot drift from the implementation. The package has no exported API.
package spec
