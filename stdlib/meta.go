package stdlib

import (
	"fmt"
	"slices"
	"strconv"

	"pipe.dev/pipe/lang/types"
)

// MetaField is a metadata field of records, read in expressions as
// meta.Name. Every field is defined here, once (see MetaFields); a source
// spec declares the ones its records carry (Spec.Meta), and the compiler
// lets an expression read only the fields every source upstream of it
// declares.
type MetaField struct {
	Name string
	Type *types.Type
	Doc  string
	get  func(*Record) any
}

// The metadata fields.
var (
	MetaTopic = MetaField{Name: "topic", Type: types.StringType,
		Doc: "the topic the record was read from (a Kafka topic, an MQTT topic name)",
		get: func(r *Record) any { return r.Topic }}
	MetaPartition = MetaField{Name: "partition", Type: types.IntType,
		Doc: "the Kafka partition the record was read from",
		get: func(r *Record) any { return int64(r.Partition) }}
	MetaOffset = MetaField{Name: "offset", Type: types.IntType,
		Doc: "the record's offset in its source partition (a Kafka offset, a byte offset in a file or stream, a generated record's number, a row's incrementing value, a Redis entry id ms-seq as ms·2^20 + seq)",
		get: func(r *Record) any { return r.Pos.Offset }}
	MetaKey = MetaField{Name: "key", Type: types.AnyType,
		Doc: "the record key (a Kafka key as decoded by key_format, an HTTP request's idempotency key), or null",
		get: func(r *Record) any { return r.Key }}
	MetaTimestamp = MetaField{Name: "timestamp", Type: types.TimestampType,
		Doc: "the event or log-append time",
		get: func(r *Record) any {
			if r.Time.IsZero() {
				return nil
			}
			return r.Time
		}}
	MetaSubject = MetaField{Name: "subject", Type: types.StringType,
		Doc: "the NATS subject the message was published on",
		get: func(r *Record) any { return r.Subject }}
	MetaHeaders = MetaField{Name: "headers", Type: types.MapOf(types.StringType),
		Doc: "the record's headers, by name",
		get: func(r *Record) any {
			h := make(map[string]any, len(r.Headers))
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			return h
		}}
	MetaObject = MetaField{Name: "object", Type: types.StringType,
		Doc: "the key of the object the record was read from (s3)",
		get: func(r *Record) any { return r.Pos.Partition }}
	MetaStream = MetaField{Name: "stream", Type: types.StringType,
		Doc: "the Redis stream the record was read from",
		get: func(r *Record) any { return r.Pos.Partition }}
	MetaEntryID = MetaField{Name: "entry_id", Type: types.StringType,
		Doc: "the id of the Redis stream entry the record was read from (\"1700000000000-0\")",
		get: func(r *Record) any { return StreamEntryID(r.Pos.Offset) }}
	MetaStreamFields = MetaField{Name: "fields", Type: types.MapOf(types.StringType),
		Doc: "the fields of the Redis stream entry the record was read from, by name",
		get: func(r *Record) any { return MetaHeaders.get(r) }}
)

// StreamSeqBits is how many low bits of the offset of a Redis stream
// entry hold the sequence part of its id; the milliseconds part takes
// the bits above them (see StreamEntryID).
const StreamSeqBits = 20

// StreamEntryID returns the id of the Redis stream entry at offset: the
// offset is the id's milliseconds shifted left by StreamSeqBits, plus
// its sequence number, so that offsets grow as ids do.
func StreamEntryID(offset int64) string {
	return strconv.FormatInt(offset>>StreamSeqBits, 10) + "-" + strconv.FormatInt(offset&(1<<StreamSeqBits-1), 10)
}

// The metadata of message broker sources (Record.Msg).
var (
	MetaExchange = msgField("exchange", types.StringType,
		"the RabbitMQ exchange the message was published to (\"\" for the default exchange)",
		"", func(m *MessageMeta) any { return m.Exchange })
	MetaRoutingKey = msgField("routing_key", types.StringType,
		"the routing key the RabbitMQ message was published with",
		"", func(m *MessageMeta) any { return m.RoutingKey })
	MetaRedelivered = msgField("redelivered", types.BoolType,
		"true when the broker delivered the message before without an acknowledgement (a consumer died or its connection broke): it may have been processed already",
		false, func(m *MessageMeta) any { return m.Redelivered })
	MetaMessageID = msgField("message_id", types.StringType.WithOptional(true),
		"the message id its producer set (AMQP message-id property), or null",
		nil, func(m *MessageMeta) any {
			if m.MessageID == "" {
				return nil
			}
			return m.MessageID
		})
	MetaQoS = msgField("qos", types.IntType,
		"the MQTT QoS the message was delivered with: the lower of its publisher's and the subscription's",
		nil, func(m *MessageMeta) any { return int64(m.QoS) })
	MetaRetained = msgField("retained", types.BoolType,
		"true for a retained MQTT message: one the broker kept for its topic and sent on subscribing, not as it was published",
		nil, func(m *MessageMeta) any { return m.Retained })
	MetaPacketID = msgField("packet_id", types.IntType,
		"the MQTT packet identifier the broker delivered the message under (0 at QoS 0); reused once acknowledged, so no identity of the message",
		nil, func(m *MessageMeta) any { return int64(m.PacketID) })
)

// msgField is a metadata field read from Record.Msg by get; it is zero
// for a record without one.
func msgField(name string, t *types.Type, doc string, zero any, get func(*MessageMeta) any) MetaField {
	return MetaField{Name: name, Type: t, Doc: doc, get: func(r *Record) any {
		if r.Msg == nil {
			return zero
		}
		return get(r.Msg)
	}}
}

// metaFields is every metadata field, in the order meta lists them.
var metaFields = []MetaField{MetaTopic, MetaPartition, MetaOffset, MetaKey, MetaTimestamp, MetaHeaders, MetaSubject, MetaObject,
	MetaStream, MetaEntryID, MetaStreamFields, MetaExchange, MetaRoutingKey, MetaRedelivered, MetaMessageID,
	MetaQoS, MetaRetained, MetaPacketID}

// MetaFields returns every metadata field, in the order meta lists them.
func MetaFields() []MetaField { return slices.Clone(metaFields) }

// DeadLetterMeta is the metadata of the records a dead-letter edge
// carries, the executor's envelopes: the failed record's key and offset,
// and the time it failed.
func DeadLetterMeta() []MetaField { return []MetaField{MetaOffset, MetaKey, MetaTimestamp} }

// MetaType returns the record type of meta with fields.
func MetaType(fields []MetaField) *types.Type {
	t := &types.Type{Kind: types.Record, Name: "meta"}
	for _, f := range fields {
		t.Fields = append(t.Fields, &types.Field{Name: f.Name, Type: f.Type})
	}
	return t
}

// Meta returns the value of meta for r: every field of MetaFields by name.
func Meta(r *Record) map[string]any {
	m := make(map[string]any, len(metaFields))
	for _, f := range metaFields {
		m[f.Name] = f.get(r)
	}
	return m
}

// checkMeta reports a declared metadata field that is not one of
// MetaFields.
func checkMeta(fields []MetaField) error {
	for _, f := range fields {
		known := false
		for _, m := range metaFields {
			known = known || m.Name == f.Name && types.Equal(m.Type, f.Type)
		}
		if !known {
			return fmt.Errorf("metadata field %q is not one of stdlib.MetaFields", f.Name)
		}
	}
	return nil
}
