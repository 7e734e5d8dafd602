// Package kafka holds pipe's Kafka source and sink, built on
// segmentio/kafka-go.
//
// Role: run-time components registered in [stdlib.Default] from init. The
// compiler checks their attributes against [SourceSpec] and [SinkSpec]
// without constructing anything; the executor builds one instance per task.
//
// # Source
//
// With `group` set, every task is a member of the consumer group (kafka-go
// ConsumerGroup), so Kafka spreads the partitions over the stage's tasks and
// over every `pipe run` process of the pipeline; without it, the partitions
// are dealt to the tasks by index. Records are fetched with the protocol
// packages, not kafka-go's Reader, so that read_committed drops the records
// of aborted transactions and the control markers (the Reader does not). A
// partition continues just after its resume position, else at the group's
// committed offset, else as `start` says. Group offsets are committed only
// in Commit, that is at completed checkpoints. A record's position is
// partition "topic/N" and its Kafka offset; Topic, Partition, Key, Headers
// and Time are set. A value that does not decode comes with Record.Err set,
// so that the stage's error policy decides.
//
// # Sink
//
// at_least_once writes through kafka-go's Writer (acks=all, asynchronous);
// Checkpoint returns once every record written before it is acknowledged.
//
// exactly_once writes through a Kafka transaction
// ([pipe.dev/pipe/stdlib/kafka/txn]) whose transactional.id is
// [TransactionalID] of pipeline, stage and task. Checkpoint commits one
// transaction holding the records written since the last one and the
// source positions they cover, which are stored in the compacted topic
// [OffsetsTopic]. Open initialises the producer (fencing an older instance
// and aborting its open transaction) and then reads those positions back:
// they are the positions the sink holds. Close aborts an open transaction.
//
// Limits: one exactly_once sink task per transactional.id, so several
// processes of one pipeline with an exactly_once Kafka sink fence each
// other; spread such a pipeline with tasks, not processes. A restart after
// a crash waits for the group to drop the dead member (up to about the
// session timeout, as kafka-go has no static membership).
package kafka
