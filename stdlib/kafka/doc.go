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
// of aborted transactions and the control markers (the Reader does not). In
// its first generation a partition continues just after its resume
// position (the state store's, lowered to what exactly-once sinks hold),
// later at the group's committed offset, lowered to what the sinks that
// acquired it hold; with neither, as `start` says. Group offsets are committed only
// in Commit, that is at completed checkpoints. A record's position is
// partition "topic/N" and its Kafka offset; Topic, Partition, Key, Headers
// and Time are set. A value that does not decode comes with Record.Err set,
// so that the stage's error policy decides.
//
// # Identity
//
// A partition's identity ([stdlib.Position]) is "<cluster id>/<topic id>"
// (ids as kafka-topics.sh shows them), looked up for every topic read when
// the source positions a generation, and passed to Resume and Acquire: a
// position stored for a topic of the same name on another cluster (a new
// broker), or for a topic deleted and created again, is not applied. Topic
// ids come with Metadata v10 (Kafka 2.8); kafka-go's protocol package stops
// at v8, so this one request goes through franz-go's client (kgo) with the
// same brokers, TLS and SASL. A broker without topic ids gives the cluster
// id alone; then a topic created again on the same cluster is not told
// apart.
//
// # Sink
//
// at_least_once writes through kafka-go's Writer (acks=all, asynchronous);
// Checkpoint returns once every record written before it is acknowledged.
//
// exactly_once writes through Kafka transactions
// ([pipe.dev/pipe/stdlib/kafka/txn]) and stores the source positions they
// cover in the compacted topic [OffsetsTopic], inside the same
// transaction. Checkpoint commits one transaction per writer:
//
//   - the task's own writer, whose transactional.id is [TransactionalID] of
//     pipeline, stage and task, takes the records of sources that do not
//     move between processes (files, generate, a Kafka source without a
//     group). Open initialises it (fencing an older instance of the task
//     and aborting its open transaction) and reads its positions back:
//     they are the positions the sink holds.
//   - every consumer-group partition this process acquired has a writer
//     of its own, whose transactional.id adds the source and partition to
//     the task's. Acquire ([stdlib.Acquirer]) initialises it, which fences
//     any other process still writing for that partition and settles its
//     open transaction, then reads the partition's position back.
//
// Close aborts open transactions.
//
// A position record (key: writer's transactional.id, source and partition)
// holds the position with its identity and the identity of the sink's
// `topic` ("target"). Open and Acquire return the positions with their
// identity (records written before identities were stored have none: they
// apply to any partition) and drop, with a tombstone committed at once,
// those stored for another incarnation of the topic: deleted and created
// again, gone, on another cluster, or created by this Open (create_topic),
// which then holds nothing stored before. Without a fixed topic
// (topic := expr) positions have no target and always hold.
//
// The sink is a [stdlib.PositionStore] (pipe offsets): StoredPositions reads
// the committed records of every writer of the stage from all partitions
// of __pipe_offsets; SetPositions writes, outside any transaction, a
// tombstone for every record of the partitions reset and the new positions
// for every task's own writer, which reads them back at the next Open. Both
// skip transactions still open; SetPositions refuses while one of the
// stage's writers has one (a run checkpointing, or a crashed run's before
// the broker aborts it after transaction_timeout), since its positions,
// committed later, would win over the ones set. The pipeline must not run
// meanwhile: a running writer keeps its positions in memory and stores
// them again at its next checkpoint.
//
// # Several processes
//
// Processes of one pipeline share a grouped source's partitions, exactly
// once: when the group rebalances, the source first settles
// ([stdlib.Handover]): the generation's group goroutine holds kafka-go's
// rejoin back until a checkpoint has made everything read so far durable
// and committed the group offsets under the ending generation. Only then
// does the process rejoin; on assignment it acquires its partitions and
// continues after what the sinks hold. A process that stalls past the
// group's rebalance timeout loses its partitions without settling: the
// process that acquires them fences its writers, so its transactions abort
// and it fails with an error naming the partition (restart it).
//
// Limits: a restart after a crash waits for the group to drop the dead
// member (up to about the session timeout, as kafka-go has no static
// membership). The task's own writer is still one per task, so sources
// that do not move between processes run in one process only.
package kafka
