// Package postgres holds the PostgreSQL sink and source, built on pgx.
//
// Role: run-time components. The compiler sees only their specs
// ([SinkSpec], [SourceSpec]); the executor builds one instance per task and
// drives it through the stdlib contracts. Nothing here dials the server
// before Open.
//
// # Sink
//
// The sink writes the records it receives into one table: by COPY (insert
// mode), or by one INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE
// (upsert mode) or DELETE ... USING unnest(...) (delete mode) taking one
// array per column. Statements run inside the task's open transaction.
//
// Each record is checked against the real columns in Write (type, range,
// length, NOT NULL, text the server cannot store): a record that fails is a
// [stdlib.RecordError] naming it, and the executor's error policy applies.
// When nothing else in the table can reject a row (no CHECK, foreign key,
// exclusion or unique constraint beyond the upsert key, no trigger, no
// domain type), rows of several Writes are buffered and sent together,
// every `batch` rows or `flush` interval and at every checkpoint. Otherwise
// the rows go to the server before Write returns, so that a row it rejects
// (a CHECK or unique violation, say) is still reported against its record:
// the statement is retried by bisection under savepoints to find it.
//
// Delivery:
//   - exactly_once: the transaction stays open until Checkpoint, which
//     upserts the checkpoint's positions into the offsets table
//     (pipe_offsets by default) and commits data and positions together.
//     Open returns the stored positions as held. The offsets rows are keyed
//     by (pipeline, sink, source, partition); sink is the stage name, with
//     "/<task>" appended when the stage runs several tasks, so that each
//     task holds exactly what it committed. Each row also stores the
//     position's identity and target, the OID of the table the rows went
//     into: rows stored for another table (dropped and created again, or
//     `table` changed) are not held, with a warning, and are deleted by the
//     next commit; a table renamed keeps its OID and so its positions. A
//     table the sink creates holds nothing: the transaction that creates
//     it deletes the stage's positions. Older offsets tables get the two
//     columns at Open (rows without them match any identity and table).
//     One extra row per sink with source = "" and partition = "" carries a
//     random commit token: after a COMMIT whose outcome is unknown (the
//     connection died while it was in flight) the sink reads it back to
//     decide whether to replay. The sink is a [stdlib.PositionStore]:
//     StoredPositions and SetPositions read and change the positions of
//     every task of the stage, SetPositions in one transaction.
//   - at_least_once: the transaction commits every `batch` rows, every
//     `flush` interval and at every checkpoint; positions are not stored.
//
// The `batch` and `flush` limits are checked when records arrive; rows
// still buffered when none arrive go at the next checkpoint.
//
// The rows written in the open transaction are kept until it commits. When
// the connection is lost or the server restarts, the sink reconnects with
// exponential backoff (bounded by retry_timeout), opens a new transaction,
// replays them and carries on: the transaction either committed or did not,
// so nothing is lost and nothing doubled. Any other failure of Write or
// Checkpoint leaves the transaction in doubt: the sink then refuses further
// calls, and the pipeline restarts from its last checkpoint.
//
// In upsert mode a record deletes its key when its value is nil (a
// tombstone: the key columns then come from the record key, a map of key
// fields or, for a one-column key, a scalar) or when its value has the field
// "__op" equal to "delete". Among rows sent together the last record of a
// key wins.
// The field "__op" is never written to a column. Fields absent from a record
// are written as null.
//
// At Open the table's real columns are read from the catalog and checked
// against the record type (the declared schema, else the compiler's input
// type): every field needs a column its values fit, every NOT NULL column
// without a default needs a field, and the key columns must be fields.
// create_table = true creates a missing table from the record type (string
// text, int bigint, float double precision, bool boolean, timestamp
// timestamptz, bytes bytea, list, map and record jsonb; the key columns form
// the primary key); evolve = add_columns adds a nullable column for each new
// field, at Open for the record type and in Write for untyped records.
//
// # Source
//
// The source reads one table or query, by an incrementing column, a
// timestamp column, both, or in bulk (a single ordered read). It reads an
// initial snapshot in batches, then polls. Positions: partition is the table
// name (or "query"); the offset is the incrementing column's value, or the
// timestamp in microseconds since the Unix epoch. A Read never splits the
// rows sharing one timestamp, so a checkpoint always covers whole
// timestamp groups and a resume after it (timestamp > offset) misses none.
// In timestamp_incrementing mode the offset is the timestamp and the
// incrementing column orders the rows within one. Column types map to
// lang/types (integers int, float and numeric float, text-like and other
// types string, json and jsonb any, arrays lists); nullable columns are
// optional. A declared schema is checked against the columns at Open. Only
// task 0 of the stage reads: a table is one partition. Its identity (see
// [stdlib.Position]) is the server's system identifier, the database's OID
// and the table's OID (a query: the database's), so that a position stored
// for a table dropped and created again, or for another server, is not
// applied; where pg_control_system() may not be called, it goes without
// the system identifier.
//
// # Change data capture
//
// The postgres_cdc source ([CDCSpec]) streams every insert, update, delete
// and truncate of the tables of a publication from a logical replication
// slot (pgoutput, protocol 1, through pglogrepl), in commit order. Open
// checks wal_level, the REPLICATION privilege and each table's primary key
// or replica identity, and creates the publication and the slot when
// missing (errors name what is missing: wal_level, REPLICATION,
// max_replication_slots, the table). A record's value is {op, table, xid,
// lsn, commit_time, before, after}, its key the primary key, its Time the
// commit time. An unchanged TOAST value not sent by the server is taken from
// the old row (REPLICA IDENTITY FULL) or makes the record a record error.
// The slot is the stream's partition; a change's offset is commit LSN <<
// [CDCIndexBits] | its index in the transaction from 1, so offsets grow
// strictly; the identity is the system identifier, the database's OID and
// the slot's name. The slot's confirmed flush LSN advances only in Commit,
// after a checkpoint covering the changes completed; standby status
// answers in between repeat it. After a crash the server streams again
// from the confirmed transaction on, and replays are dropped by offset.
//
// With snapshot = initial (the default) the rows come first, as records
// with op "read" (cdc_snapshot.go): a slot the source creates exports its
// snapshot, which a REPEATABLE READ transaction imports to read every
// table in primary-key chunks, exactly the rows committed before the
// slot's consistent point, where the stream then starts. Each table is a
// partition "snapshot:schema.table" whose offsets are the key (a
// one-column integer key) or row numbers, its last row at MaxInt64 (read
// whole). A snapshot interrupted (its exported snapshot gone) goes on after
// the position held with the rows as they are then; the stream, still
// from the consistent point, replays every change since, so a replica
// upserting and deleting by key converges (spec: postgres_cdc, Snapshot).
// A WAL position seen outside any transaction (a keepalive's, or that of
// the heartbeat message the source writes every heartbeat) is confirmed
// too once every change emitted before it is covered by a checkpoint, so
// the slot advances while the captured tables are idle. Lag reports the
// WAL the slot holds back in bytes; ReportPositions gives `pipe offsets
// show` the slot's confirmed position.
package postgres
