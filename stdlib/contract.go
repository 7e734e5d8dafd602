package stdlib

import (
	"cmp"
	"context"
	"errors"
	"slices"
)

// ErrEndOfInput is returned by Source.Read when a bounded source is exhausted.
var ErrEndOfInput = errors.New("end of input")

// Source reads records from an external system. The executor creates one
// Source per task of a source stage (Config.Task of Config.Tasks) and drives
// it from that task's goroutine only.
type Source interface {
	// Open connects and positions the source. For every partition it reads,
	// it asks resume for the last position already durable downstream and
	// continues just after it; where resume has none it starts as configured.
	Open(ctx context.Context, resume Resumer) error
	// Read blocks until records are available and returns a batch. The batch
	// belongs to the caller. A bounded source returns ErrEndOfInput when done.
	Read(ctx context.Context) ([]Record, error)
	// Commit is called after every sink has made the records up to these
	// positions durable (a completed checkpoint): a Kafka source commits
	// group offsets here. Positions only grow; a source must tolerate a
	// partition it no longer owns.
	Commit(ctx context.Context, positions []Position) error
	// Close releases the source. It may be called on a source never
	// opened, and again: it then does nothing.
	Close(ctx context.Context) error
}

// Resumer tells a source where to continue a partition: the last position
// made durable by the checkpoint store or an exactly-once sink.
type Resumer interface {
	// Resume returns the last durable position of partition, whose
	// identity (see [Position]) the source gives. A position stored for
	// another identity is not applied (the executor logs both); neither are
	// the positions sinks hold for it, so its records are not dropped as
	// replays. A source calls Resume for a partition before it emits any
	// of its records; a stream that cannot be read again (stdin) never
	// calls it, so it never resumes and no record of it is dropped.
	Resume(partition, identity string) (offset int64, ok bool)
}

// PositionLister is what the Resumer a source gets also does when the
// executor runs it: it lists what is stored for the source's partitions,
// so that a source whose partitions follow what they hold rather than
// where it is (the file source: a renamed or copied file keeps its
// partition) can find, by identity, the partition a file continues. The
// source then resumes that partition as usual.
type PositionLister interface {
	// StoredPositions returns the positions stored for the source's
	// partitions when the run started, by the checkpoint store and by the
	// exactly-once sinks the source feeds, each with its identity; a
	// partition appears once per holder.
	StoredPositions() []Position
}

// Handover is what the Resumer a source gets also does when the executor
// runs it: it lets a source whose partitions move between processes (a
// Kafka consumer group) hand partitions over without loss or doubling.
// Such a source calls Settle before it gives its partitions up and Acquire
// for the partitions it is given, and continues each acquired partition
// after the returned position.
type Handover interface {
	Resumer
	// Settle blocks until everything the source emitted so far is durable
	// in every sink (a checkpoint started after the call completed) and
	// the source's positions are committed (Source.Commit, called from
	// inside Settle).
	Settle(ctx context.Context) error
	// Acquire takes partitions over for this process: every exactly-once
	// sink downstream that can (an [Acquirer]) fences earlier writers of
	// them, and the lowest position any of them holds is returned per
	// partition. Records at or below it are dropped before those sinks.
	// partitions maps each partition to its identity: a position held for
	// another identity is neither returned nor used to drop records.
	Acquire(ctx context.Context, partitions map[string]string) (map[string]int64, error)
	// Fresh reports whether Resume started partition afresh because an
	// exactly-once sink holds nothing of it (its target is new or was
	// reset): the source then starts it as its start attribute says, not
	// at an offset committed elsewhere (a consumer group's).
	Fresh(partition string) bool
}

// Acquirer is implemented by an exactly-once sink that fences its writes
// per source partition, so that the processes of one pipeline can share a
// source's partitions: the process that acquires a partition fences any
// other still writing for it (which then fails instead of committing).
// Acquire is called from a source's goroutine, concurrently with Write and
// Checkpoint, and returns the positions the sink holds for partitions.
type Acquirer interface {
	Acquire(ctx context.Context, source string, partitions []string) ([]Position, error)
}

// ResumeMap is a Resumer backed by a map, whatever the identity.
type ResumeMap map[string]int64

// Resume implements Resumer.
func (m ResumeMap) Resume(partition, _ string) (int64, bool) {
	off, ok := m[partition]
	return off, ok
}

// Checkpoint is a barrier that reached a sink: everything written before it
// must become durable together with Positions.
type Checkpoint struct {
	ID        uint64
	Positions []Position // per source partition, the last position the checkpoint covers
}

// Sink writes records to an external system. The executor creates one Sink
// per task of a sink stage and drives it from that task's goroutine only.
type Sink interface {
	// Open connects. An exactly-once sink returns the positions it already
	// holds durably: sources resume after them and the executor drops
	// replayed records at or below them before they reach Write.
	Open(ctx context.Context) (held []Position, err error)
	// Write hands over a batch. The sink may buffer; nothing is durable
	// before Checkpoint returns. A RecordErrors result rejects single
	// records; any other error fails the batch.
	Write(ctx context.Context, batch []Record) error
	// Checkpoint makes everything written so far durable, together with
	// the positions (atomically for exactly_once: one database
	// transaction, one Kafka transaction, one rename).
	Checkpoint(ctx context.Context, cp Checkpoint) error
	// Close flushes nothing: unflushed data is replayed after a restart.
	// It may be called on a sink never opened, and again: it then does
	// nothing.
	Close(ctx context.Context) error
}

// CheckpointStarter is implemented by a sink whose checkpoint can become
// durable while it goes on writing (a file sink syncing what it wrote):
// the executor then calls StartCheckpoint instead of Checkpoint. It does,
// in order with Write, what the checkpoint must cover (writing out what
// the sink buffered; no record written after it belongs to the
// checkpoint) and returns finish, which makes it durable with the
// positions as Checkpoint would. The executor runs finish on another
// goroutine, concurrently with later calls of Write, and acknowledges the
// checkpoint when it returns nil; it calls finish again to retry, and
// neither StartCheckpoint nor Close before finish returned. The sink
// waits for a finish in progress itself wherever Write would disturb it
// (closing the file finish syncs, say).
type CheckpointStarter interface {
	StartCheckpoint(ctx context.Context, cp Checkpoint) (finish func(context.Context) error, err error)
}

// Transform is a record-at-a-time transform component (the built-in filter,
// map and route stages are compiled by the executor itself).
type Transform interface {
	// Apply transforms r, passing zero or more records to emit. An error
	// applies the stage's error policy to r.
	Apply(ctx context.Context, r *Record, emit func(Record)) error
}

// ReplacePositions returns held after a PositionStore.SetPositions: the
// positions of source in the partitions of reset (all of its partitions
// when reset is empty) and in those of set are dropped, and set added as
// positions of source, sorted by source and partition.
func ReplacePositions(held []Position, source string, reset []string, set []Position) []Position {
	held = slices.DeleteFunc(held, func(p Position) bool {
		return p.Source == source && (len(reset) == 0 || slices.Contains(reset, p.Partition) ||
			slices.ContainsFunc(set, func(q Position) bool { return q.Partition == p.Partition }))
	})
	for _, p := range set {
		p.Source = source
		held = append(held, p)
	}
	slices.SortFunc(held, func(a, b Position) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Partition, b.Partition))
	})
	return held
}

// PositionStore is implemented by an exactly-once sink that keeps the
// positions it holds in its target (a table, a topic, a sidecar file), so
// that `pipe offsets` can show and change them. The sink is built by its
// spec's constructor (task 0 of Config.Tasks) but not opened: these methods
// connect as they need and must not write records or fence writers. They
// cover the positions of every task of the stage.
type PositionStore interface {
	// StoredPositions returns every position the sink holds, with the
	// identity stored with it.
	StoredPositions(ctx context.Context) ([]Position, error)
	// SetPositions replaces what the sink holds for the partitions of
	// source listed in reset (every partition of source when reset is
	// empty) with set, positions of source (empty: the partitions are
	// forgotten and the sink drops nothing of them as replays).
	SetPositions(ctx context.Context, source string, reset []string, set []Position) error
}

// SourcePositionStore is implemented by a source that keeps positions of
// its own, apart from the state store and the sinks, and resumes from
// them where neither holds one (a Kafka consumer group's committed
// offsets), so that `pipe offsets` changes them with the others. The
// source is built by its spec's constructor (task 0 of Config.Tasks) but
// not opened; the method connects as it needs.
type SourcePositionStore interface {
	// SetPositions replaces what the source keeps for the partitions
	// listed in reset (every partition when reset is empty) with set:
	// positions of the source, each the last one done; with none kept,
	// a partition starts as the source's start attribute says.
	SetPositions(ctx context.Context, reset []string, set []Position) error
}

// SourcePositionReporter is implemented by a source whose input keeps a
// position of its own that a run confirms (a replication slot's confirmed
// position), so that `pipe offsets show` shows it beside the held ones.
// The source is built by its spec's constructor (task 0 of Config.Tasks)
// but not opened; the method connects as it needs.
type SourcePositionReporter interface {
	// ReportPositions returns the positions the source's input keeps,
	// each the last one done, and what keeps them (shown as the holder).
	ReportPositions(ctx context.Context) (holder string, positions []Position, err error)
}
