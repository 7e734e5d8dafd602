package stdlib

import (
	"context"
	"sync"
)

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

// CaughtUpper is implemented by a source that knows, after a Read that
// returned records, whether its input held nothing more at that moment (a
// Kafka source: every partition read to its end). The executor asks it on
// the goroutine that calls Read, right after Read. A checkpoint ahead of
// the interval when the input goes quiet waits for a source that is
// behind; one that is not a CaughtUpper counts as quiet once a Read has
// blocked for a while without records.
type CaughtUpper interface {
	CaughtUp() bool
}

// ByteCounter is implemented by a sink that counts the bytes it wrote to
// its target (encoded records, as sent: a file's lines, Kafka message keys
// and values). SentBytes is cumulative since the sink was built and is
// called from other goroutines than the sink's task, so it must be safe
// for that (an atomic counter).
type ByteCounter interface {
	SentBytes() int64
}

// LagProbe runs a source's lag queries on a connection of their own (C), so
// that they never share the reading connection that Read may replace while
// they run: the probe opens it on first use, drops it after a failed query
// (the next query opens another) and closes it on Close. Queries are
// serialised; after Close, Lag answers the last figures it had.
type LagProbe[C any] struct {
	Open  func(ctx context.Context) (C, error)
	Query func(ctx context.Context, c C) ([]Lag, error)
	Drop  func(c C)

	mu     sync.Mutex
	conn   C
	open   bool
	closed bool
	last   []Lag
}

// Lag runs Query on the probe's connection.
func (p *LagProbe[C]) Lag(ctx context.Context) []Lag {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.last
	}
	if !p.open {
		c, err := p.Open(ctx)
		if err != nil {
			return nil
		}
		p.conn, p.open = c, true
	}
	lags, err := p.Query(ctx, p.conn)
	if err != nil {
		p.drop()
		return nil
	}
	p.last = lags
	return lags
}

// Close closes the probe's connection; Lag answers the last figures since.
func (p *LagProbe[C]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.drop()
}

func (p *LagProbe[C]) drop() {
	if p.open {
		p.Drop(p.conn)
		var zero C
		p.conn, p.open = zero, false
	}
}
