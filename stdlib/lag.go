package stdlib

import "context"

// Lag is how far the end of one partition is ahead of what a source read.
type Lag struct {
	Partition string
	Behind    int64  // in Unit
	Unit      string // "records", "bytes", "ids" or "ms"
}

// Lagger is implemented by a source that knows how much of its input is
// still to read: a Kafka partition's high watermark minus the next offset,
// a file's size minus the bytes read, the records a bounded generator has
// still to produce, the ids or time a database source is behind. The executor calls Lag from another goroutine than the
// one calling Read, concurrently with Read and Close and once after Close
// (the lag where the source stopped), and bounds it with ctx: it must be
// safe for that and should answer from what the source
// already knows (one stat of a file at most). A partition whose end is not
// known yet is left out.
type Lagger interface {
	Lag(ctx context.Context) []Lag
}

// ByteCounter is implemented by a sink that counts the bytes it wrote to
// its target (encoded records, as sent: a file's lines, Kafka message keys
// and values). SentBytes is cumulative since the sink was built and is
// called from other goroutines than the sink's task, so it must be safe
// for that (an atomic counter).
type ByteCounter interface {
	SentBytes() int64
}
