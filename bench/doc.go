// Package bench holds pipe's benchmark tooling: input generation
// (bench/gen, bench/cmd/geninput), the two Go baselines (bench/tuned, a
// fastjson loop without maps, and bench/baseline, encoding/json and maps),
// a resource-measuring runner (bench/cmd/measure), the benchmark script
// run.sh writing RESULTS.md, instr.sh counting the instructions the
// benchmark pipelines execute (valgrind; steady on a loaded machine), and
// the crash kill test (bench/killtest).
package bench
