// Package schemareg holds what the formats carried through a
// Confluent-compatible Schema Registry share: the wire format framing a
// message (magic byte 0, the 4-byte big-endian schema id, then, for
// Protobuf, the message indexes), the subject name strategies, a registry
// client with a cache of schemas by id, and Avro compatibility checks that
// name the field that breaks.
//
// A format plugs in by decoding the payload after [Parse] with the schema
// [Client.ByID] returns and by framing its encoding with [Append].
//
// Package devreg serves a registry for development and tests.
package schemareg
