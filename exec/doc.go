// Package exec is pipe's runtime: it runs a compiled [plan.Plan].
//
// Phase: run time. Input: a plan (from the compiler or a plan.json) and a
// component registry. Output: records moved from sources to sinks, with
// checkpoints recorded in the state store ([state]) and source offsets
// committed once every sink made them durable.
//
// Model. A stage with tasks = N runs as N goroutines. Stages exchange
// batches of records over bounded channels, so memory stays bounded whatever
// the input rate (a full channel blocks its sender). A built-in filter, map
// or route fed by one stage only, as its only main output and over a
// forward edge, is chained instead: the upstream task calls it with each
// batch, barrier and end of stream. Batches written by a sink that releases
// them go back to the sources (stdlib.Recycler). Between stages records
// are dispatched by partition: the hash of a record's source partition (or
// of the field the receiving stage names in partition_by) picks the
// receiving task, so per-partition order holds across stages with different
// task counts. A map stage whose input values nobody else holds changes
// them in place; elsewhere it builds new values, and records fanned out to
// a component transform are deep-copied. Sources must return a fresh value
// per record.
//
// Checkpoints follow DESIGN.md §4. A coordinator starts checkpoint n every
// plan.Checkpoint interval, when the input went quiet (records read since
// the last checkpoint began, none since its previous look, every twentieth
// of the interval, and every source task waiting for input: see
// coordinator.quiet), when every source is exhausted or stopped, and on
// shutdown. Source tasks inject barrier n after the last batch they
// emitted, carrying the last position of every partition they emitted; a
// task forwards a barrier once it arrived from every upstream task (each
// upstream task has its own channel to it, which the task stops reading
// once that task's barrier arrived: the sender blocks, so alignment needs
// no buffer); a sink task makes its output durable with the positions of
// every source upstream of it, merged with what it held before, so its
// positions only grow (Sink.Checkpoint), and acknowledges. When every sink task,
// dead-letter sinks included, acknowledged n, the coordinator saves n in the
// state store and then hands each source task its positions to Commit.
// Positions are never committed before that, and never twice.
//
// Recovery: sinks are opened first; each exactly-once sink task reports the
// positions it holds (a sink with several tasks keeps them per task, see
// stdlib.Config.Task). Every source partition resumes after the lowest of
// the state store's position and the positions held for it (from its
// configured start when the store has none), and each sink task drops
// replayed records at or below its own held position before Write.
//
// Partitions that move between processes (a Kafka consumer group): the
// Resumer a source gets is a [stdlib.Handover]. Before a source gives its
// partitions up it calls Settle, which asks the coordinator for a
// checkpoint at once, waits for it and commits; for the partitions it is
// given it calls Acquire, which asks every exactly-once sink downstream
// that is a [stdlib.Acquirer] to fence earlier writers and report what it
// holds, and resets that sink task's held and covered positions to it.
//
// Each source task has a goroutine that alone calls the Source (Read, and
// Commit between two reads) and another that routes the batches and injects
// barriers, so a source blocked in Read on an idle input does not hold
// checkpoints back; only its commits wait for the Read to return.
//
// Observing and steering a run: every task counts what it received, sent,
// failed (by [ErrorKind]), dead-lettered, skipped and retried, and times its
// batches (and a sink its Write and Checkpoint calls), with atomic additions
// once per batch into counters of its own. A [Handle] passed in
// [Config.Handle] reads them ([Handle.Snapshot], with each partition's
// position, committed position and, from a [stdlib.Lagger] source, lag),
// judges health ([Handle.Health]: a checkpoint completed within
// [HealthBound] and no sink call in flight longer), lists the held
// positions, and pauses (the read goroutines wait before each Read and
// before handing a batch on; barriers still flow), resumes, checkpoints
// and stops the run.
//
// Malformed input: a source returns records with [stdlib.Record.Err] set;
// they go through the source stage's error policy. Transform errors and sink
// record or batch errors go through their stage's policy: fail, skip,
// dead_letter(sink) (an envelope record, see [Envelope]) or retry with
// exponential backoff and a fallback.
package exec
