// Package core holds pipe's dependency-free components: the generate,
// file and stdin sources and the stdout, file and discard sinks.
//
// Role: run time (constructors called by the executor, once per task) and
// compile time (the specs, which the compiler checks stages against and
// `pipe connectors` lists). Each component registers its spec from init.
//
// Positions: generate uses one partition per task ("gen/<task>", offset =
// the task's record sequence); file uses one partition per file content
// (named by the path it was first read at and a hash of its identity, the
// fingerprint of its first bytes: see fileid.go; offset = the byte offset
// just after the record's line); stdin uses partition "stdin" with the
// same byte offsets. A restart resumes just after the last durable offset
// of each partition. File and stdin records also carry their line number
// and the offset their line starts at (Record.Line, Record.Start), which
// decode errors name; a file opened at a later offset has the lines before
// it counted first.
//
// An attribute written as a reference (count = "${env:N}") reaches a
// constructor as a string once the task resolved it; the constructors parse
// such strings by the attribute's kind (int, float, bool, duration, size)
// and report a value that does not parse as an error naming the attribute.
//
// Parallelism within a task: with more than one P, generate builds each
// batch of at least 512 records on up to 4 goroutines (a record's values
// depend only on its number, so the records are the same), and file decodes
// each batch the same way, with one codec per goroutine (not csv, whose
// header row's columns the file's codec holds). Read returns only when
// the whole batch is done, so callers see one goroutine calling the Source.
//
// Decode failures (a malformed JSON line, a CSV row of the wrong width, a
// value not of the declared schema's type, invalid UTF-8) do not fail a
// read: the record carries the error, which names the input, the line
// number and the line's byte offset, in Record.Err and the original bytes
// in Record.Raw, and the executor applies the source stage's error policy
// to it. A CSV header row that does not match the declared columns does
// fail the read: it is a configuration error, not a record's.
package core
