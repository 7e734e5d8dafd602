// Package bench holds pipe's benchmark tooling: input generation
// (bench/gen, bench/cmd/geninput), the plain Go baseline (bench/baseline),
// a resource-measuring runner (bench/cmd/measure), the benchmark script
// run.sh writing RESULTS.md, instr.sh counting the instructions the
// benchmark pipelines execute (valgrind; steady on a loaded machine), and
// the crash kill test (bench/killtest).
package bench
