// Package testrun runs a plan's inline tests hermetically on the real
// executor.
//
// Phase: after compile. Input: a *plan.Plan holding Tests. For each test it
// clones the plan, replaces every source with one that emits the test's
// given records (none for a source the test does not feed) and every sink —
// and every route port an expectation names — with an in-memory capture,
// pins the clock, and runs the clone with exec.Run: the same compiled
// transforms and the same executor as `pipe run`, no network, no secrets.
// Output: one Result per test, with the expectations that failed and a
// readable diff of expected and actual records.
//
// Generate feeds random records built from each source's declared schema
// through the graph instead, and reports records that make a stage fail or
// that reach a sink not matching the sink's declared schema.
package testrun
