// Package kafka holds pipe's Kafka source and sink, built on
// segmentio/kafka-go.
//
// Role: run-time components registered in [stdlib.Default] from init. The
// compiler checks their attributes against [SourceSpec] and [SinkSpec]
// without constructing anything; the executor builds one instance per task.
//
// The source reads through the group protocol (kafka-go ConsumerGroup) and
// fetches with the protocol packages so that read_committed drops aborted
// records and control markers (kafka-go's Reader does not). It continues
// from resume positions, else committed group offsets, else `start`, and
// commits group offsets only in Commit, at completed checkpoints. Record
// positions are partition "topic/N" and the record's Kafka offset.
//
// The sink writes through kafka-go's Writer for at_least_once and through a
// Kafka transaction ([pipe.dev/pipe/stdlib/kafka/txn]) for exactly_once:
// each checkpoint commits one transaction holding the records and the
// positions they cover, which are written to the compacted topic
// __pipe_offsets and read back by Open.
package kafka
