// Package exec is pipe's runtime: it runs a compiled [plan.Plan].
//
// Phase: run time. Input: a plan (from the compiler or a plan.json) and a
// component registry. Output: records moved from sources to sinks, with
// checkpoints recorded in the state store ([state]) and source offsets
// committed once every sink made them durable.
//
// Model. A stage with tasks = N runs as N goroutines. Stages exchange
// batches of records over bounded channels, so memory stays bounded whatever
// the input rate (a full channel blocks its sender). Between stages records
// are dispatched by partition: the hash of a record's source partition (or
// of its key, or of an expression, when the receiving stage sets
// partition_by) picks the receiving task, so per-partition order holds
// across stages with different task counts.
//
// Checkpoints follow DESIGN.md §4. A coordinator starts checkpoint n every
// plan.Checkpoint interval, when every source is exhausted or stopped, and
// on shutdown. Source tasks inject barrier n after the last batch they
// emitted, carrying the last position of every partition they emitted; a
// task forwards a barrier once it arrived from every upstream task (input
// from an upstream task whose barrier arrived is held back until then); a
// sink task makes its output durable with the positions of every source
// upstream of it (Sink.Checkpoint) and acknowledges. When every sink task,
// dead-letter sinks included, acknowledged n, the coordinator saves n in the
// state store and then hands each source task its positions to Commit.
// Positions are never committed before that, and never twice.
//
// Recovery: sinks are opened first; each exactly-once sink task reports the
// positions it holds. Every source partition resumes after the lowest of the
// state store's position and the positions held for it, and each sink task
// drops replayed records at or below its own held position before Write.
//
// Each source task has a goroutine that alone calls the Source (Read, and
// Commit between two reads) and another that routes the batches and injects
// barriers, so a source blocked in Read on an idle input does not hold
// checkpoints back; only its commits wait for the Read to return.
//
// Malformed input: a source returns records with [stdlib.Record.Err] set;
// they go through the source stage's error policy. Transform errors and sink
// record or batch errors go through their stage's policy: fail, skip,
// dead_letter(sink) (an envelope record, see [Envelope]) or retry with
// exponential backoff and a fallback.
package exec
