// Package redis is the Redis connector: a source reading streams through
// a consumer group and a sink writing keys (SET), hashes (HSET) or
// streams (XADD), over go-redis (RESP2, TLS, ACL user and password).
//
// The source reads with XREADGROUP and acknowledges entries (XACK) only
// once a checkpoint covering them completed. After a restart the
// consumer first reads its own pending entries again (skipping and
// acknowledging those every sink already holds), then new ones; when it
// opens it claims (XAUTOCLAIM) the pending entries of other consumers of
// the group idle for claim_idle. A stream is a partition; an entry id
// "ms-seq" is the offset ms<<20 | seq, so exactly-once sinks downstream
// drop replayed entries. A stream's identity is a consumer group the
// source adds to it (pipe.identity.<random>): it survives trimming and
// deleted entries and changes when the stream is deleted and made again.
// One consumer of a pipeline reads a stream at a time (a stage's tasks
// share streams out): the consumers of one group reading one stream in
// several processes would interleave the stream's offsets.
//
// The sink pipelines its commands (at_least_once: a batch is sent again
// whole after a lost connection, so XADD may add an entry twice; SET and
// HSET of the same record write the same value again). Under
// exactly_once it holds the commands until the checkpoint and runs them in
// Lua scripts that also write the positions they reach into a hash
// (positions_key): Redis runs a script whole, so after a crash the hash
// says exactly which records are written. Redis 7 has no idempotent
// XADD: a producer-chosen id must grow, which one stream fed by several
// partitions cannot promise, hence the positions.
package redis
