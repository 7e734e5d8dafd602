// Package nats is the NATS connector: the nats source and sink work with
// JetStream, the nats_core source and sink with core NATS subjects.
//
// # Source: nats
//
// The source reads one JetStream stream through a durable pull consumer
// (consumer = "name", optionally filter = "subject.>") with the AckAll
// policy. It acknowledges messages only after a checkpoint covering them
// completed (Source.Commit): the last message read at or below the
// checkpoint's position is acknowledged, and with AckAll that covers every
// message before it. The stream is one partition, named after the stream,
// whose offsets are stream sequences; its identity is the stream's name and
// creation time, so positions are never applied to a stream deleted and
// created again under the same name. Only task 0 reads; other tasks stay
// idle.
//
// Records carry meta.subject, meta.headers, meta.offset (the stream
// sequence) and meta.timestamp (when the stream stored the message).
//
// A crash before the acknowledgement leaves messages delivered and not
// acknowledged: on its own the source is at least once. At Open the
// source continues after the resume position the checkpoint store and the
// exactly-once sinks hold: when the consumer does not stand exactly there
// (messages pending, another acknowledged floor), the consumer is deleted
// and created again to deliver from the resume position, so that records
// come in stream order and positions only grow; an exactly-once sink then
// drops what it already holds, and the pipeline is exactly once. The
// consumer belongs to the pipeline: do not share it with other readers.
// Deleting a consumer of a stream with interest retention discards the
// messages no other consumer is interested in; use limits or work-queue
// retention. While running, a message delivered again (ack_wait passed) is
// dropped as read already; deliveries lost in transit (a pull broken off
// by a server restart: the consumer sequence jumps) take the consumer back
// to the last checkpoint's position, the records read since being dropped
// as read already.
//
// # Sink: nats
//
// The sink publishes asynchronously to JetStream and waits for every
// acknowledgement before Write returns, so a checkpoint covers only stored
// messages. Each message carries a Nats-Msg-Id made of the pipeline, the
// sink stage and the record's source position (source, partition, offset,
// and a number for the second and later records of one position). With
// exactly_once the sink keeps the positions each checkpoint covers in a
// key-value bucket (offsets_bucket), so that sources resume after them,
// with the identity of its stream: positions kept for a stream deleted
// and created again do not apply.
// After a crash the records since the last checkpoint are written again
// with the same ids, and JetStream drops those it stored already — but only within
// the stream's duplicate window (duplicate_window, 2m by default): a
// replay later than that after the first publish is stored twice. The sink
// is exactly once under that condition only, and at least once beyond it.
// subject := expr and headers := expr choose per record; create_stream
// creates the stream. A record JetStream rejects (no stream for its
// subject, too large) goes through the stage's error policy; publishes a
// lost connection left unacknowledged are sent again, with the same ids.
//
// # Core NATS: nats_core
//
// nats_core subscribes to a subject (with an optional queue group) and
// publishes on subjects without JetStream. Core NATS keeps nothing: a
// message published while the pipeline is down or too slow is lost, and
// the source never resumes. The sink declares at_most_once only; a
// checkpoint waits until the server received everything (a flush).
//
// # Connections
//
// url lists servers; user/password, token, nkey_seed (secrets) or a creds
// file authenticate; tls configures TLS. The client reconnects by itself;
// operations that fail meanwhile are retried with backoff until
// retry_timeout.
package nats
