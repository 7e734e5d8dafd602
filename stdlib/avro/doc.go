// Package avro maps Avro schemas (.avsc files) to pipe types, so that
// `schema Name from "file.avsc"` declares a record type the compiler checks
// expressions against with no network, and holds the `avro` format of the
// file source and sink: Avro object container files, written by Writer and
// read by Reader.
package avro
