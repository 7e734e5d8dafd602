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
// in Commit, that is at completed checkpoints. The source is a
// [stdlib.SourcePositionStore]: `pipe offsets reset` deletes the group's
// offsets of the partitions, `set` commits the offset given (the broker
// refuses while the group has members). A record's position is
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
// for every task's own writer, which reads them back at the next Open, and
// for every task's writer of each partition set, which Acquire reads back
// when a consumer group hands the partition over. Both
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
// membership). The task's own writer is one per task and instance (a
// cluster's `instances = N`: instance I > 0 adds "#I" to its transactional
// id), so sources that do not move between processes run in one process
// only.
//
// # Lost connections
//
// A request that fails on a refused or broken connection, a timeout or a
// broker error that passes by itself (see transient) is retried with
// [pipe.dev/pipe/stdlib/retry.Backoff] until retry_timeout, at Open as
// later, each component on a fresh kafka.Transport after a failure (a
// link): kafka-go's pool keeps a dead connection until a request fails on
// it, so after a broker restart every pooled connection would fail once
// more.
//
//   - The source fetches again from its partitions' positions, which
//     advance only over records handed on. Its consumer group rejoins
//     (each failed join waits for the backoff); group offsets a lost
//     connection kept from being committed are committed with the next
//     checkpoint, and position the partitions of the next generation if
//     the group's own are older.
//   - The at_least_once sink writes the messages the lost connection left
//     unacknowledged again, on a new Writer, before any new one.
//   - The exactly_once sink recovers inside the connector rather than
//     failing the stage for the run to restart from the last checkpoint:
//     what that restart would replay into the sink — the records handed to
//     the open transactions since they began — the producers still hold
//     (they keep every batch until its transaction ends), so the sink
//     starts the transactions over without rereading its input, and the
//     run goes on. After any lost connection, every writer with an open
//     transaction takes the next epoch of its transactional id (KIP-360:
//     InitProducerID with its current producer id and epoch), which aborts
//     whatever the broker still holds of the transaction — a broker that
//     restarted may have aborted it and bumped the epoch already, so
//     fencing errors seen together with the lost connection are taken for
//     that — and sends the held batches into a new one. The broker refuses
//     the new epoch when another producer took the transactional id over
//     meanwhile: that is fencing, handled as before. (The development
//     broker grants any older epoch: there a process fenced at the moment
//     it lost its connection takes the id back, and the other process
//     fails as fenced at its next commit; a restart settles it.) A commit
//     whose answer was lost may have committed: every transaction stores a
//     random commit token in __pipe_offsets (key "commit|<transactional
//     id>", apart from the writer's position keys), which the sink reads
//     back once the new epoch has settled the old transaction — found, it
//     committed and nothing is sent again; else it is replayed. So a transaction is never committed
//     partly or twice. Acquire and the restart are serialised, so that a
//     writer Acquire replaced is never revived. The cost: the open
//     transactions' batches, at most a checkpoint interval of output, stay
//     in memory until they commit.
package kafka
