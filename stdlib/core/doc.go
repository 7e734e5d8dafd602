// Package core holds pipe's dependency-free components: the generate,
// file and stdin sources and the stdout, file and discard sinks.
//
// Role: run time (constructors called by the executor, once per task) and
// compile time (the specs, which the compiler checks stages against and
// `pipe connectors` lists). Each component registers its spec from init.
//
// Positions: generate uses one partition per task ("gen/<task>", offset =
// the task's record sequence); file uses one partition per file (its path,
// offset = the byte offset just after the record's line); stdin uses
// partition "stdin" with the same byte offsets. A restart resumes just
// after the last durable offset of each partition.
package core
