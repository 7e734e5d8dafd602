// Package httpconn holds pipe's HTTP connectors, built on net/http: the
// http sink, the http_server source (webhooks) and the http_poll source
// (an API polled with a cursor). The package is httpconn so that it does
// not shadow net/http; its directory is stdlib/http.
//
// Role: run-time components registered in [stdlib.Default] from init. The
// compiler checks their attributes against [SinkSpec], [ServerSourceSpec]
// and [PollSourceSpec] (listen address, methods, status codes, URLs and
// the poll expressions are checked statically) without constructing
// anything; the executor builds one instance per task.
//
// # Sink
//
// Write turns its batch into requests — one per record (format = json) or
// batches of records of one target and source partition as a JSON array
// or NDJSON, cut at max_batch_records and max_batch_bytes — and sends them,
// concurrency at a time and no faster than rate_limit, before it returns;
// Checkpoint has nothing left to do. Connection errors and the statuses of
// retry_on are retried with jittered exponential backoff, or after the
// Retry-After the server asked for, until retry_timeout has passed since
// the request's first failure (the stage then fails). Any other status but
// 2xx rejects the request's records, each with the method, URL, status and
// start of the body, through the stage's on_error.
//
// Delivery is at least once: after a crash the records since the last
// checkpoint are sent again. Each request carries a key derived from the
// source positions of its records, "<pipeline>/<source>/<partition>/<first
// offset>[-<last offset>]" in the idempotency_header (Idempotency-Key), the
// same when a record is sent again; a receiver that keeps the keys (or the
// offset ranges) it has processed drops the replays. With batches, a replay
// may cut them differently: the key names the offset range, so a receiver
// keeping ranges drops what it already has, and one keeping keys only sees
// the same key only for the same batch (format = json always gives one).
//
// # http_server
//
// The server accepts records in requests to path (methods, bearer or basic
// authentication, TLS with optional client certificates) and answers only
// once the records are durable: a request's records get the next offsets
// of the source's one partition (named after path); before Read hands them
// on, the request's last offset and its Idempotency-Key are appended to a
// position log in the state directory (http_server.<stage>.log) and
// synced; the request is answered (status, default 200, with its offsets)
// when Commit reports a completed checkpoint covering that offset, that is
// once every sink made its records durable. The answer is a commit
// receipt, and its latency about one checkpoint interval.
//
// After a crash, a log entry at or below the highest position stored for
// the partition (by an exactly-once sink or the state store) is a
// committed request: a retry with its key is answered 200 again
// (Idempotent-Replayed: true) and hands nothing on, for dedupe_window. An
// entry above it lost its records with the process, was never answered
// 2xx, and is forgotten, so the retry is taken. Offsets continue after the
// highest ever given out. With an exactly_once sink, every request
// answered 2xx is in the sink exactly once, and a client retrying until it
// gets a 2xx with the same key delivers its request exactly once. A
// request without a key that is retried is taken again. With several
// exactly-once sinks a crash between their commits may leave a request in
// one of them only (the source cannot send it again).
//
// The partition's identity is a random id made with the log: deleting the
// state directory starts a new identity, whose offsets no sink drops.
//
// Refusals: 404 (another path), 405, 401, 413 (max_body_size), 400 with
// the line and byte offset of the first record that does not decode
// (malformed = reject; with on_error the record goes to the stage's
// on_error instead), 429 with Retry-After when max_pending requests wait
// to be handed on (backpressure from the pipeline), and 503 with
// Retry-After when no checkpoint covered a request within reply_timeout
// or the pipeline stops (a retry with the same key waits for the same
// records, which stay on their way).
//
// # http_poll
//
// The poller requests url every interval (at once again after a page that
// moved the cursor), takes the records from the decoded JSON response by
// the records expression and the next cursor by the cursor expression, and
// sends the cursor as the cursor_param query parameter. Records get
// growing offsets; before a poll's records are handed on, the last offset
// and the cursor after the poll are appended to the position log
// (http_poll.<stage>.log) and synced. A restart continues from the cursor
// of the last entry at or below the highest stored position: the records
// after it were not made durable and are fetched again, but for those of
// the page fetched again that were (a position inside a page), dropped.
package httpconn
