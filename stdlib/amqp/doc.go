// Package amqp holds pipe's RabbitMQ source and sink (component name
// rabbitmq), speaking AMQP 0.9.1 through github.com/rabbitmq/amqp091-go.
//
// Role: run-time components registered in [stdlib.Default] from init. The
// compiler checks their attributes against [SourceSpec] and [SinkSpec]
// without constructing anything; the executor builds one instance per task.
//
// # Source
//
// Each task opens a connection and a channel, sets the prefetch count
// (QoS) and consumes the queue with manual acknowledgements. Nothing is
// acknowledged when it is read: Commit, called once a checkpoint covering
// the records is durable in every sink, acknowledges the messages at or
// below the committed offset with one multiple ack. When the prefetch
// window is full the broker sends nothing more, so the source asks for a
// checkpoint (Handover.Settle) instead of waiting for the next interval.
//
// A queue has no offsets. A record's position is partition "QUEUE" ("QUEUE#N"
// for task N of several) and a number counting the messages this process
// received, from 1, across reconnects: it orders acknowledgements and
// nothing else. It means nothing after a restart (the broker hands out
// what was not acknowledged, in another order, with new delivery tags), so
// each source gives its partition an identity of its own ("session/<random>")
// when it opens: a position stored by an earlier run is not applied (the
// executor logs that once), no sink drops a record as a replay, and the
// positions this run stores replace the old ones instead of being compared
// with them. The delivery is therefore at least once: a message
// whose acknowledgement a crash or a broken connection prevented comes
// again with meta.redelivered set; the spec declares at_least_once (and
// at_most_once), and the compiler rejects an exactly_once sink fed by it.
// A consumer that must not see a message twice dedupes on meta.message_id
// when its producer sets one (this package's sink does, from the source
// position).
//
// A channel or connection that closes (a server stopping sends
// CONNECTION_FORCED, a network failure, a missed heartbeat) is reopened
// with backoff (stdlib/retry) until retry_timeout; the messages it had
// delivered are requeued by the broker and come again. A closed channel
// for another reason (the queue was deleted, access refused) fails the
// stage with the broker's reason.
//
// # Sink
//
// The sink publishes on a channel in confirm mode, persistent messages by
// default, to an exchange with a routing key per record (routing_key :=
// expr). The message id is, unless message_id := expr sets it,
// "pipeline:source:partition:offset" of the record's position: the same
// for a record published again after a crash when its source can be read
// again by position (Kafka, files, PostgreSQL), so consumers can drop
// replays. With mandatory (the default) every Write waits for its
// messages' confirms, so that a message the broker returns as unroutable
// fails its record alone, through the stage's on_error; without it the
// confirms are awaited at the checkpoint. A checkpoint completes only
// when the broker confirmed every message before it, so a crash replays
// what might be lost: at least once (RabbitMQ has no deduplication of
// published messages). Unconfirmed messages are published again on a new
// connection after a channel closes or the broker refuses them.
//
// Both declare exchanges, queues and bindings at start when asked
// (declare_exchange, declare_queue, bind) and take the URL, with its
// credentials, as a secret: messages name the server as
// scheme://host:port/vhost, never the URL.
package amqp
