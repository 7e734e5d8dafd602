package exec

import (
	"sync"
	"sync/atomic"
	"time"

	"pipe.dev/pipe/stdlib"
)

// ErrorKind says where a record failed.
type ErrorKind int

const (
	DecodeError     ErrorKind = iota // malformed input at a source
	EvaluateError                    // an expression or transform failed on the record
	WriteError                       // a sink rejected the record or its batch
	CheckpointError                  // a sink failed to make a checkpoint durable (counted per attempt)
	numErrorKinds
)

var errorKindNames = [numErrorKinds]string{"decode", "evaluate", "write", "checkpoint"}

func (k ErrorKind) String() string { return errorKindNames[k] }

// bucketBounds are the upper bounds of the duration histograms.
var bucketBounds = [...]time.Duration{
	100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// histogram counts durations in bucketBounds, lock-free.
type histogram struct {
	counts [len(bucketBounds) + 1]atomic.Uint64 // the last one is +Inf
	sum    atomic.Int64                         // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(bucketBounds) && d > bucketBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) since(start time.Time) { h.observe(time.Since(start)) }

// Histogram is a snapshot of a duration histogram.
type Histogram struct {
	Bounds []float64 `json:"bounds"` // bucket upper bounds in seconds (+Inf not listed)
	Counts []uint64  `json:"counts"` // observations per bucket, the last one above every bound
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"` // seconds
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: make([]float64, len(bucketBounds)), Counts: make([]uint64, len(h.counts))}
	for i, b := range bucketBounds {
		out.Bounds[i] = b.Seconds()
	}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = time.Duration(h.sum.Load()).Seconds()
	return out
}

// Cumulative returns the count of observations at or below each bound.
func (h Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	for i, b := range h.Bounds {
		n += h.Counts[i]
		out[b] = n
	}
	return out
}

// taskMetrics counts what one task did. Its task adds to it once per batch
// (not per record); snapshots read it from other goroutines.
type taskMetrics struct {
	received      atomic.Int64 // records in (read, for a source)
	receivedBytes atomic.Int64 // bytes read (sources whose records keep them)
	sent          atomic.Int64 // records out (written, for a sink)
	errors        [numErrorKinds]atomic.Int64
	deadLettered  atomic.Int64
	skipped       atomic.Int64
	retries       atomic.Int64
	replays       atomic.Int64 // sinks: replayed records dropped as already held
	// sentBytes reads the bytes a sink wrote (a stdlib.ByteCounter); nil
	// for other tasks.
	sentBytes func() int64

	batch      histogram // time a task spent on a batch, passing it on included
	write      histogram // sinks: Write
	checkpoint histogram // sinks: Checkpoint

	// busySince is when the sink call in flight started (unix ns; 0 when
	// none), busyOp what it is.
	busySince atomic.Int64
	busyOp    atomic.Int32
	// durableAt is when the sink task last made a checkpoint durable (unix
	// ns; 0: not yet in this run).
	durableAt atomic.Int64

	_ [64]byte // tasks' metrics do not share a cache line
}

const (
	opWrite int32 = iota + 1
	opCheckpoint
)

// begin marks a sink call as in flight and returns its start.
func (m *taskMetrics) begin(op int32) time.Time {
	now := time.Now()
	m.busyOp.Store(op)
	m.busySince.Store(now.UnixNano())
	return now
}

// end marks the sink call started at start as done.
func (m *taskMetrics) end(h *histogram, start time.Time) {
	m.busySince.Store(0)
	h.since(start)
}

// TaskStatus holds one task's counters.
type TaskStatus struct {
	Task          int              `json:"task"`
	Received      int64            `json:"received"`
	ReceivedBytes int64            `json:"received_bytes,omitempty"`
	Sent          int64            `json:"sent"`
	SentBytes     int64            `json:"sent_bytes,omitempty"`
	Errors        map[string]int64 `json:"errors"` // by ErrorKind name
	DeadLettered  int64            `json:"dead_lettered"`
	Skipped       int64            `json:"skipped"`
	Retries       int64            `json:"retries"`
	Replays       int64            `json:"replays_dropped,omitempty"`
	Batch         Histogram        `json:"batch_seconds"`
	Write         *Histogram       `json:"write_seconds,omitempty"`      // sinks
	Checkpoint    *Histogram       `json:"checkpoint_seconds,omitempty"` // sinks
	// Busy is how long the sink call in flight (Busy names it) has run.
	Busy   time.Duration `json:"busy_ns,omitempty"`
	BusyOp string        `json:"busy_op,omitempty"`
	// LastCheckpoint is when the sink task last made a checkpoint durable.
	LastCheckpoint time.Time `json:"last_checkpoint,omitzero"`
}

func (m *taskMetrics) snapshot(task int, sink bool, now time.Time) TaskStatus {
	ts := TaskStatus{
		Task: task, Received: m.received.Load(), ReceivedBytes: m.receivedBytes.Load(), Sent: m.sent.Load(),
		Errors:       make(map[string]int64, numErrorKinds),
		DeadLettered: m.deadLettered.Load(), Skipped: m.skipped.Load(), Retries: m.retries.Load(),
		Replays: m.replays.Load(), Batch: m.batch.snapshot(),
	}
	for k := range m.errors {
		ts.Errors[ErrorKind(k).String()] = m.errors[k].Load()
	}
	if m.sentBytes != nil {
		ts.SentBytes = m.sentBytes()
	}
	if sink {
		w, c := m.write.snapshot(), m.checkpoint.snapshot()
		ts.Write, ts.Checkpoint = &w, &c
		if at := m.durableAt.Load(); at != 0 {
			ts.LastCheckpoint = time.Unix(0, at)
		}
		if since := m.busySince.Load(); since != 0 {
			ts.Busy = max(now.Sub(time.Unix(0, since)), 0)
			ts.BusyOp = "write"
			if m.busyOp.Load() == opCheckpoint {
				ts.BusyOp = "checkpoint"
			}
		}
	}
	return ts
}

// ErrorStatus is the last error of a stage.
type ErrorStatus struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	At      string    `json:"at"`               // file:line of the stage or expression
	Record  string    `json:"record,omitempty"` // where the record came from (path:line or partition@offset)
	Message string    `json:"message"`          // secrets redacted
}

// lastError keeps a stage's last error.
type lastError struct {
	mu  sync.Mutex
	err *ErrorStatus
}

func (l *lastError) set(e *ErrorStatus) {
	l.mu.Lock()
	l.err = e
	l.mu.Unlock()
}

func (l *lastError) get() *ErrorStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// noteError records err as the stage's last error.
func (r *run) noteError(s *stageRT, kind ErrorKind, at string, rec *stdlib.Record, err error) {
	e := &ErrorStatus{Time: time.Now(), Kind: kind.String(), At: at, Message: r.cfg.Redactor.Redact(err.Error())}
	if rec != nil && rec.Pos.Partition != "" {
		e.Record = r.cfg.Redactor.Redact(rec.Where())
	}
	s.lastErr.set(e)
}
