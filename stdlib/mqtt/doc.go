// Package mqtt holds pipe's MQTT source and sink, built on
// github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1).
//
// Role: run-time components registered in [stdlib.Default] from init. The
// compiler checks their attributes against [SourceSpec] and [SinkSpec]
// without constructing anything; the executor builds one instance per task.
//
// # The client
//
// paho.mqtt.golang is the Eclipse project's maintained MQTT 3.1.1 client,
// and it does what the source needs: with SetAutoAckDisabled a received
// message is acknowledged (PUBACK, PUBREC at QoS 2) only when Message.Ack
// is called, so the source can hold the acknowledgement until a checkpoint
// covered the message. The MQTT 5 client of the same project
// (github.com/eclipse/paho.golang) would add the receive maximum (a window
// the client chooses rather than the broker's max_inflight_messages) and
// "retain handling" (no retained messages again on subscribing again),
// but it is a pre-1.0 module (v0.x) whose copy here is not an approved
// release; MQTT 5 brings nothing that changes the guarantees below.
//
// # Source
//
// The source connects with a fixed client id (client_id, default
// pipe-<pipeline>-<stage>) and clean session false, so the broker keeps its
// session between connections and runs: its subscriptions and every QoS 1
// or 2 message not yet acknowledged. It subscribes to topic or topics
// (topic filters, + and # wildcards, $share/GROUP/FILTER) at qos (1 or 2)
// on every connection; subscribing again replaces a subscription with the
// same one, and the broker then sends the topic's retained message again.
//
// Messages are acknowledged in Commit, that is after a checkpoint covering
// them completed in every sink: one that was read but not covered when the
// process died or the connection broke stays in the session and comes
// again. The broker sends a client at most its in-flight window of
// unacknowledged messages (Mosquitto: max_inflight_messages, 20 by
// default, for MQTT 3.1.1 clients) and then waits for acknowledgements: so
// that input never waits for the checkpoint interval, the source asks the
// executor for a checkpoint at once ([stdlib.Handover].Settle, which also
// commits) when max_inflight messages wait. Throughput is then a window
// per checkpoint (bench/RESULTS-mqtt.md).
//
// A record's position is partition <client id> (identity
// mqtt://<first broker>/<client id>) and an offset that counts
// the messages handed on, continuing after the stored position, so that
// offsets grow across runs. It names no message: MQTT has no offsets and
// no message identity (a packet id is reused once acknowledged). Record
// carries Topic and, in Record.Msg, the QoS the message came at, its
// retain flag and packet id (meta.topic, meta.qos, meta.retained,
// meta.packet_id). A payload that does not decode comes with Record.Err
// set, for the stage's error policy; the message is acknowledged with its
// checkpoint like any other.
//
// # Delivery
//
// The source gives at least once, and the spec says so (Spec.Delivery):
// the compiler rejects exactly_once on any sink its records reach. Exactly
// once would need to tell a redelivered message from a new one with the
// same content, and MQTT 3.1.1 gives nothing to do it by: no offset to
// resume from and no message id that outlives the acknowledgement (packet
// ids are reused). The acknowledgement itself cannot join a sink's
// transaction: a crash between a checkpoint's commit and the PUBACK
// delivers the message again. Limits, all the broker's: a message published
// at QoS 0 arrives at QoS 0 and is never redelivered; Mosquitto drops QoS
// 1 messages queued for a session past max_queued_messages (1000 by
// default, logging "Outgoing messages are being dropped"), so a backlog
// larger than that while no pipe run is connected, or while it cannot keep
// up, is lost; and the session and its queue survive a broker restart only
// with persistence on (this machine's /etc/mosquitto/mosquitto.conf has
// persistence true; Mosquitto writes its database on a clean stop and every
// autosave_interval, so a broker that crashes loses what came since).
//
// # Sink
//
// The sink publishes each record to topic (a topic name, no wildcards),
// or topic := expr per record, or else the topic the record was read from,
// at qos 0, 1 or 2 with retain (or retain := expr). A topic that is empty,
// holds a wildcard or is not valid UTF-8 is a record error for the error
// policy. MQTT 3.1.1 brokers answer no publish with an error (Mosquitto
// acknowledges a message its ACL refuses and drops it), so nothing else is
// one. Checkpoint returns once the broker acknowledged every message
// published before it (QoS 1: PUBACK; QoS 2: PUBCOMP). at_least_once needs
// qos 1 or 2; at_most_once takes any qos and publishes nothing again.
//
// # Lost connections
//
// Neither component lets paho reconnect: a lost connection is replaced
// through [pipe.dev/pipe/stdlib/retry] (backoff, retry_timeout), at Open as
// later. The source reconnects to its session and subscribes again; what
// it received on the old connection and had not acknowledged the broker
// sends again, and it is handed on again (at least once). The
// sink connects with a clean session and, under at_least_once, publishes
// again on the new connection what the lost one left unacknowledged; it
// may arrive twice. A refused identity or password and a TLS certificate
// the client does not trust fail at once.
package mqtt
