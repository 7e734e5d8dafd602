// Package mysql holds the MySQL and MariaDB sink and source, built on
// github.com/go-sql-driver/mysql. What they share with the postgres
// connector (modes, record conversion, buffering, type checks, positions
// bookkeeping, incremental queries) is in stdlib/internal/sqlcommon.
//
// Role: run-time components. The compiler sees only their specs
// ([SinkSpec], [SourceSpec]) and Check; nothing here dials the server
// before Open.
//
// # Connection
//
// `dsn` is the driver's data source name (user:pass@tcp(host:3306)/db);
// `password` replaces the one in it, and a `tls` block (ca, cert, key,
// server_name, insecure_skip_verify) connects with TLS (so does a dsn's
// tls=true). Both are secrets: errors never show the dsn, the password or
// the key. The session's time zone is UTC: DATETIME values are read and
// written as UTC. Placeholders are filled in by the client
// (interpolateParams): one round trip per statement.
//
// # Sink
//
// The sink writes the records it receives into one table: by multi-row
// INSERT (insert mode), INSERT ... ON DUPLICATE KEY UPDATE (upsert) or
// DELETE ... WHERE key IN (...) (delete), one statement per `batch` rows
// (at most 65,535 values), inside the task's open transaction.
//
// Each record is checked against the real columns in Write (type, integer
// range, length in characters and bytes, NOT NULL, UTF-8, DATETIME and
// TIMESTAMP ranges): a record that fails is a [stdlib.RecordError] naming
// it, and the executor's error policy applies. When nothing else in the
// table can reject a row (no CHECK constraint but JSON validity, no
// foreign key, trigger or unique index beyond the upsert key, no DECIMAL,
// ENUM, SET or other server-checked column), rows of several Writes are
// buffered and sent together, every `batch` rows or `flush` interval and
// at every checkpoint. Otherwise the rows go to the server before Write
// returns, so that a row it rejects (a duplicate key, a CHECK violation)
// is reported against its record: InnoDB undoes only the failed statement,
// and the sink sends its rows again in halves until it finds the rejected
// ones.
//
// Delivery:
//   - exactly_once: the transaction stays open until Checkpoint, which
//     upserts the checkpoint's positions into the offsets table
//     (pipe_offsets by default, created in the sink's database) and
//     commits data and positions together. Open returns the stored
//     positions as held. Rows are keyed by (pipeline, sink, source,
//     partition), compared as bytes (utf8mb4_bin); each stores the
//     position's identity and target, the InnoDB id of the table the rows
//     went into (information_schema.INNODB_SYS_TABLES, or INNODB_TABLES on
//     MySQL): it stays when the table is renamed or altered in place and
//     changes when it is dropped and created again, so positions stored
//     for another table are not held (a warning says so) and are deleted
//     by the next commit. Where the id cannot be read (no PROCESS
//     privilege) positions are not tied to the table, as the log says. One
//     extra row per sink with source = "" carries a random commit token:
//     after a COMMIT whose outcome is unknown the sink kills the old
//     connection if it still exists and reads the token back to decide
//     whether to replay. The sink is a [stdlib.PositionStore].
//   - at_least_once: the transaction commits every `batch` rows, every
//     `flush` interval and at every checkpoint; positions are not stored.
//
// DDL commits the open transaction in MySQL: create_table runs before any
// data, and evolve (add_columns) for a new field of untyped records rolls
// the open transaction back, adds the columns, and replays the
// transaction. A table the sink creates holds no positions (its id is
// new; the stage's positions are deleted after it is created).
//
// The rows written in the open transaction are kept until it commits.
// When the connection is lost or the server restarts (or a deadlock or
// lock wait timeout undoes the transaction), the sink reconnects with
// exponential backoff (bounded by retry_timeout), opens a new transaction,
// replays them and carries on. Any other failure of Write or Checkpoint
// leaves the transaction in doubt: the sink then refuses further calls,
// and the pipeline restarts from its last checkpoint.
//
// In upsert mode a record deletes its key when its value is nil (a
// tombstone, keyed by the record key) or has "__op" = "delete"; among rows
// sent together the last record of a key wins. ON DUPLICATE KEY UPDATE
// acts on any unique index: a row that collides with another unique index
// than the key updates the row it collides with, as in MySQL.
//
// At Open the table's columns are read from information_schema and checked
// against the record type: every field needs a column its values fit,
// every NOT NULL column without a default needs a field, and the key
// columns must be fields. create_table = true creates a missing table from
// the record type (string longtext, int bigint, float double, bool
// boolean, timestamp datetime(6), bytes longblob, list, map and record
// json; a string key varchar(255), the key columns forming the primary
// key); evolve = add_columns adds a nullable column for each new field.
//
// # Source
//
// The source reads one table or query by an incrementing column, a
// timestamp column, both, or in bulk, as the postgres source does: an
// initial snapshot in batches, then polls; a batch never splits the rows
// of one timestamp. The offset is the incrementing column's value or the
// timestamp in microseconds since the Unix epoch (DATETIME read as UTC).
// Column types map to lang/types (integers and years int, tinyint(1)
// bool, float, double and decimal float, char and text types string, json
// (and MariaDB's longtext with a json_valid check) any, binary and blob
// types bytes, datetime, timestamp and date timestamp); nullable columns
// are optional. Only task 0 reads. Its identity is the server
// (@@server_uuid, MariaDB's @@server_id), the database and the table's
// InnoDB id (a query: server and database).
package mysql
