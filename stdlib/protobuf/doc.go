// Package protobuf maps Protocol Buffers messages (.proto files) to pipe
// types, so that `schema Name from "file.proto#pkg.Message"` declares a
// record type the compiler checks expressions against with no network, and
// holds the `protobuf` format: the binary encoding of one message, decoded
// and encoded on the wire (protowire) by the compiled descriptor, which a
// type read by Compile keeps (google.protobuf.Struct, Value and ListValue
// go through dynamicpb).
//
// The codec works on the plain payload of one message; framing (a length
// prefix in files, a registry's header on Kafka) is the caller's.
package protobuf
