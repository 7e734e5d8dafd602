// Package codec turns the bytes of one message (a line of a file, a Kafka
// record value) into a record value and back, by format.
//
// Role: run time, used by sources to decode and by sinks to encode. It
// imports only lang/types.
//
// Formats:
//
//	json    one JSON object per message; numbers without a fraction or
//	        exponent that fit in 64 bits decode as int64, others as float64
//	csv     one row per message; columns named by a header row (see
//	        [HeaderCodec]), Options.Columns, or the schema's field order
//	lines   the message as text: {"value": "<text>"} (alias: string)
//	bytes   the message as bytes: {"value": []byte}
//	debezium  Debezium's JSON change event envelope: a change record
//	        ({op, table, xid, lsn, commit_time, before, after}) is encoded
//	        as one; an event decodes as its row with the operation in
//	        "__op" ([DebeziumOp]), like ExtractNewRecordState
//
// With a declared schema (a record [types.Type]) decoded values are coerced
// to the schema's runtime representation (int64, float64, bool, string,
// time.Time from RFC 3339, []byte from base64, nested records, lists and
// maps); a missing required field or a value of the wrong type is an error
// that names the field ("field \"amount\": want float, got string"). Fields
// the schema does not declare are dropped, so a decoded record is exactly of
// the schema's type.
//
// Decoding never changes text: invalid UTF-8 in a json string or key, a
// csv field or a lines message is an error wrapping [ErrInvalidUTF8] that
// names its offset, or, with [Options.KeepInvalidUTF8], kept as it is.
//
// JSON encoding is deterministic: with a schema (or the compiler's inferred
// type) fields are written in the type's field order, followed by any
// undeclared fields in sorted order; without one, keys are written in sorted
// order, as encoding/json does. Absent optional fields of a typed record are
// written as null. Encoding escapes ", \, control characters, U+2028 and
// U+2029, and replaces invalid UTF-8 with U+FFFD; it does not HTML-escape.
// Floats use the shortest representation that round-trips (as encoding/json);
// NaN and infinities are errors. Timestamps are written in RFC 3339 with
// nanoseconds as needed, bytes in standard base64.
//
// The JSON reader and writer are written for this package rather than taken
// from a library (goccy/go-json, bytedance/sonic, valyala/fastjson and
// segmentio/encoding were measured; see bench/RESULTS.md): records are
// always map[string]any, so the cost is in allocations, not parsing. The
// decoder slices every string out of one copy of the message and boxes
// scalars through an [Arena] (2 allocations per record, the map itself,
// against 11–19 for the libraries); the encoder caches the sorted key order
// of the previous record and allocates nothing. Both scan string bytes
// eight at a time, and numbers of at most 15 digits (the usual prices and
// amounts) convert without strconv in both directions, with the results
// strconv gives. Decoding is as fast as the
// fastest library and encoding about 1.5–3× faster; decode + encode is
// about 4× encoding/json.
//
// A Codec keeps per-instance caches and is not safe for concurrent use:
// every task creates its own.
package codec
