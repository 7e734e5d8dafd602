// Package cluster runs many pipelines on a cluster of `pipe worker`s, on
// Kafka's own group coordinator, as Kafka Connect's distributed mode does:
// no consensus of its own.
//
// # Membership
//
// The workers of cluster NAME are the members of the Kafka group NAME, of
// protocol type "pipe" (Kafka Connect's is "connect") and protocol
// "sticky-1". A worker joins with JoinGroup, whose metadata (JSON) names
// the worker, the URL of its REST API, how far it read the config topic and
// the instances it runs now. The coordinator picks a leader; the leader
// reads the config topic to its end, computes the assignment and hands it
// out with SyncGroup; every member then heartbeats. A member that misses
// heartbeats for the session timeout is dropped and a rebalance starts; a
// worker that is stopped (SIGINT/SIGTERM) stops its instances and sends
// LeaveGroup, so the rebalance starts at once. A member the coordinator no
// longer knows (its heartbeat answers UNKNOWN_MEMBER_ID or
// ILLEGAL_GENERATION, or no heartbeat succeeded for a session timeout:
// it was paused or cut off) stops every instance before joining again.
//
// # Assignment
//
// The unit of work is a pipeline instance, "NAME/0" … "NAME/N-1" for a
// pipeline of `instances = N`: all the stages of a pipeline in one worker,
// run as `pipe run` runs them (exec.Run), with its state store in
// STATE_DIR/NAME (STATE_DIR/NAME#I for instance I > 0). Instances of one
// pipeline share its grouped Kafka sources' partitions as several `pipe
// run` processes do; the leader spreads them over distinct workers when
// there are enough (see assign). The leader's assignor is balanced and
// sticky, in two phases (the idea of KIP-415/KIP-429, incremental
// cooperative rebalancing): a member keeps every instance it runs up to its
// quota (⌊n/k⌋ or ⌈n/k⌉); what it holds beyond is revoked, not reassigned in
// the same generation; the member stops it and rejoins at once, and in the
// next generation it goes to a member under its quota.
// Its count of instances is the definition's plan's (compiled once per
// version). Instances that stay
// put run on through a rebalance. An instance nobody runs (new, or its
// worker died) goes to the member furthest under its quota. A rebalance
// starts when a member joins or leaves, and when the leader reads that a
// pipeline was added or removed (it rejoins). A new version of a pipeline
// is restarted by the worker that runs it, with no rebalance.
//
// # Topics
//
// Three topics, created by the first worker with one partition each,
// cleanup.policy=compact, min.compaction.lag.ms=0 and the replication
// factor of --replication-factor (-1: the broker's default):
//
//   - NAME-configs: key the pipeline name, value a JSON [Definition] (the
//     .pipe text, the files it imports and the file name its diagnostics
//     use); a tombstone
//     removes the pipeline. A definition's version is its record's offset.
//     A key "target-state:NAME" holds the pipeline's target state, JSON
//     {"state":"paused"} or {"state":"running"}: a paused pipeline's
//     instances run nothing and show "paused" (pause.go).
//   - NAME-status: key the instance id, value a JSON [Status] (worker,
//     state, last error, version and group generation), written by the
//     worker running the instance when it starts, finishes, fails or
//     stops. A status of an earlier generation than the one it follows,
//     from another worker, is ignored unless it is "starting", so a
//     stopping or fenced worker's last word does not hide its
//     successor's, and a group whose generations begin again (it was
//     empty) still shows its new starts.
//   - NAME-offsets: key the instance id, value its last completed
//     checkpoint (below), written in transactions and read committed.
//
// Every worker reads the first two topics from the start and keeps their
// latest values; the REST API answers from them.
//
// # Writes
//
// Any worker takes a PUT or DELETE: it checks the pipeline (as `pipe
// check` does) and writes the config topic itself. This is equivalent to
// forwarding the write to the leader: the topic's single partition orders
// all writes, and every worker, the leader among them, applies them in
// that order; the leader assigns from the topic read to its end.
//
// # Exactly once across moves
//
// A moved instance keeps its identity: the Kafka sink's transactional ids
// derive from the pipeline, stage, task and instance, the same on every
// worker, so the new owner's first transaction fences the old owner's
// producer. The PostgreSQL sink takes a new epoch of the instance at open
// (its fences table, keyed by pipeline, sink task and instance) and refuses
// commits of an older one, so a paused worker that wakes cannot commit. The
// file sink's lock refuses two writers of one file. Each instance's state
// store is its record in NAME-offsets ([kafkaState]): a checkpoint is
// saved in a transaction of the id NAME-offsets-INSTANCE and counts once
// that commits; opening the store fences the instance's earlier owners
// before it reads, so a moved instance resumes exactly from the last
// checkpoint any owner completed, on a worker with any state directory.
// With LocalState the store is STATE_DIR/NAME instead: exact across moves
// only when the workers share that directory.
//
// # Pause and offsets
//
// POST pause writes the target state; the worker running the instance
// cancels its run (drain, final checkpoint) and writes "paused". The
// offsets API (exec.Offsets over the instance's store and its sinks)
// changes positions only while the pipeline is paused and its instance
// shows it, as Kafka Connect's KIP-875 does; a worker that is not the
// leader forwards these writes to the leader.
package cluster
