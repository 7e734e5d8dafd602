// Package fn is the expression function library: the host functions that
// pipe expressions may call in addition to expr-lang's builtins.
//
// Role: one registry shared by the compiler, which type-checks calls against
// each function's typed signatures, and the executor, which runs the same Go
// implementations. [Options] turns the registry into expr options; [Functions]
// documents it for `pipe connectors` and the reference.
//
// Invariants: functions never panic (bad input is an error naming the
// function); none of them reads the environment, files or the network, so
// secrets cannot reach expressions; now() reads only the injected clock;
// functions marked NonDeterministic (now, random, random_int, uuid) are the
// only ones whose result differs between runs on the same record.
//
// Runtime values follow lang/types: ints are int64, floats float64,
// timestamps time.Time, lists []any, records and maps map[string]any.
package fn
