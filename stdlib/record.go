package stdlib

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// SessionIdentity returns the identity of a partition that is never
// resumed (a queue, which has no offsets): a new one each run, so that no
// position of an earlier run applies. The executor does not warn that
// such positions are not applied.
func SessionIdentity() string { return fmt.Sprintf("session/%016x", rand.Uint64()) }

// IsSessionIdentity says whether identity was made by SessionIdentity.
func IsSessionIdentity(identity string) bool { return strings.HasPrefix(identity, "session/") }

// Position is where a record came from: a source stage, one of its
// partitions (a Kafka "topic/3", a file's content, a table) and an offset that
// grows along the partition. A checkpoint covers, per partition, every
// record at or below its position.
//
// Identity names what the offsets point into: the incarnation of the
// partition (a Kafka cluster and topic id, a file's device, inode and
// fingerprint, a database's system id and table oid). Records leave it
// empty; the executor fills it into the positions a checkpoint stores, and
// a stored position whose identity differs from the partition's is never
// applied. An empty identity (positions stored before identities, sources
// that have none) matches any.
type Position struct {
	Source    string `json:"source"`             // source stage name
	Partition string `json:"partition"`          // partition within the source
	Offset    int64  `json:"offset"`             // offset within the partition
	Identity  string `json:"identity,omitempty"` // what the offsets point into
}

func (p Position) String() string {
	if p.Identity != "" {
		return fmt.Sprintf("%s[%s]@%d (%s)", p.Source, p.Partition, p.Offset, p.Identity)
	}
	return fmt.Sprintf("%s[%s]@%d", p.Source, p.Partition, p.Offset)
}

// SameIdentity reports whether a position stored with identity stored may
// be applied to a partition whose identity is now current: they are equal,
// or one of them is unknown.
func SameIdentity(stored, current string) bool {
	return stored == "" || current == "" || stored == current
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is the unit of data that flows through a pipeline.
//
// Value holds the decoded value in the representation documented in
// lang/types (map[string]any for structured records); Raw keeps the bytes it
// was decoded from when the source has them, for dead-letter envelopes.
type Record struct {
	Key       any // nil, string, []byte or a structured value
	Value     any
	Headers   []Header
	Time      time.Time // event or log-append time; zero if unknown
	Topic     string    // Kafka topic read from, or to write to ("" = the sink's own)
	Partition int32     // Kafka partition read from, or -1
	Subject   string    // NATS subject read from, or to publish on ("" = the sink's own)
	Pos       Position
	Raw       []byte
	Err       error // decode failure: the record goes through the source stage's error policy

	// Attrs holds, in a record handed to a sink, the values of the
	// sink's per-record attributes (subject := expr) in the order of
	// Config.Exprs; nil when the stage sets none. Read it with Attr.
	Attrs []any

	// Line and Start locate a record read from a line format (JSON
	// lines, CSV, raw lines) in its file or stream: its line number,
	// from 1, and the byte offset its line starts at (Pos.Offset is the
	// offset after the line, where a resumed read continues). Line is 0
	// when the source has no lines.
	Line  int64
	Start int64

	// Msg holds what a message broker source knows of the record beyond
	// the fields above (see MessageMeta); nil for other sources.
	Msg *MessageMeta
}

// MessageMeta is what a message broker source knows of a record beyond
// the fields every source has: how a RabbitMQ message was routed, whether
// it is a redelivery, the id its producer gave it; an MQTT message's QoS,
// retain flag and packet id. Expressions read it as meta.exchange,
// meta.routing_key, meta.redelivered, meta.message_id, meta.qos,
// meta.retained and meta.packet_id.
type MessageMeta struct {
	Exchange    string // the exchange the message was published to ("" for the default exchange)
	RoutingKey  string // the routing key it was published with
	Redelivered bool   // the broker delivered it before and it was not acknowledged
	MessageID   string // the message id its producer set; "" when none
	QoS         int    // the QoS the message was delivered with (MQTT: 0, 1 or 2)
	Retained    bool   // the broker kept the message for its topic and sent it on subscribing (MQTT retain flag)
	PacketID    int    // the MQTT packet identifier the broker delivered it under; 0 at QoS 0
}

// Attr returns the record's value of the per-record attribute at index i
// (Config.ExprIndex), and false when the stage does not set it (i < 0).
func (r *Record) Attr(i int) (any, bool) {
	if i < 0 || i >= len(r.Attrs) {
		return nil, false
	}
	return r.Attrs[i], true
}

// Where names the record's place in its source for messages:
// "partition:line (byte start)" for a record of a line format (a file's
// partition is its path and a hash of its content), else
// "partition@offset".
func (r *Record) Where() string {
	if r.Line > 0 {
		return LineRef(r.Pos.Partition, r.Line, r.Start)
	}
	return fmt.Sprintf("%s@%d", r.Pos.Partition, r.Pos.Offset)
}

// LineRef names a line of a file or stream for messages: "in.jsonl:3
// (byte 41)", the line number counted from 1 and the byte offset the line
// starts at.
func LineRef(name string, line, start int64) string {
	return fmt.Sprintf("%s:%d (byte %d)", name, line, start)
}

// RecordError is the failure of one record of a batch handed to a sink or a
// transform: the runtime applies the stage's error policy to that record.
type RecordError struct {
	Index int // index in the batch
	Err   error
}

func (e RecordError) Error() string { return fmt.Sprintf("record %d: %v", e.Index, e.Err) }

// RecordErrors is returned by Sink.Write when some records of a batch were
// rejected on their own merits (bad value, constraint violation) while the
// others were accepted. Any other error fails the whole batch.
type RecordErrors []RecordError

func (es RecordErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	return fmt.Sprintf("%d records rejected; first: %v", len(es), es[0])
}
