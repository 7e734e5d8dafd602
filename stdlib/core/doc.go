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
//
// An attribute written as a reference (count = "${env:N}") reaches a
// constructor as a string once the task resolved it; the constructors parse
// such strings by the attribute's kind (int, float, bool, duration, size)
// and report a value that does not parse as an error naming the attribute.
//
// Decode failures (a malformed JSON line, a CSV row of the wrong width, a
// value not of the declared schema's type) do not fail a read: the record
// carries the error in Record.Err and the original bytes in Record.Raw, and
// the executor applies the source stage's error policy to it.
package core
