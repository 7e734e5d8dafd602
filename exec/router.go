package exec

import (
	"context"
	"fmt"
	"hash/maphash"

	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/stdlib"
)

// dest is one downstream stage as seen by one sending task.
type dest struct {
	stage *stageRT
	from  int // the sender's index at stage
	bufs  [][]stdlib.Record
	vm    vm.VM // for the stage's partition_by expression

	lastSrc, lastPart string
	lastTask          int
	// fixed is the one task every record goes to, or -1: a stage of one
	// task, or a forward edge (same task count, no partition_by: task i
	// feeds task i, which keeps per-partition order since a partition
	// reaches a single task of the sending stage).
	fixed int
	// chained is task fixed of a chained stage: batches, barriers and the
	// end of stream are handed to it by calls instead of messages.
	chained *transformTask
}

// router buffers a task's output per downstream task and sends full
// batches. It is owned by one task goroutine.
type router struct {
	r     *run
	owner *stageRT
	dests []*dest            // every downstream stage
	ports map[string][]*dest // by output port
	dlq   *dest
	main  []*dest
	// direct is the main output when it is one stage whose task is fixed:
	// whole batches are handed to it without copying.
	direct *dest
	// sent counts records handed downstream (not to the dead-letter sink).
	sent int64
	// m is the owning task's metrics.
	m *taskMetrics
}

func newRouter(r *run, s *stageRT, task int) *router {
	rt := &router{r: r, owner: s, ports: map[string][]*dest{}, m: s.metrics[task]}
	byStage := map[*stageRT]*dest{}
	for _, o := range s.outs {
		d := &dest{stage: o, from: o.senderBase[s.idx] + task, bufs: make([][]stdlib.Record, o.st.Tasks), lastTask: -1, fixed: -1}
		switch {
		case o.st.Tasks == 1:
			d.fixed = 0
		case o.st.Tasks == s.st.Tasks && o.partBy == nil:
			d.fixed = task
		}
		if o.chained {
			d.chained = o.tasks[d.fixed]
		}
		byStage[o] = d
		rt.dests = append(rt.dests, d)
	}
	for port, to := range s.ports {
		for _, o := range to {
			rt.ports[port] = append(rt.ports[port], byStage[o])
		}
	}
	rt.main = rt.ports[""]
	if len(rt.main) == 1 && rt.main[0].fixed >= 0 && len(s.ports) <= 1 {
		rt.direct = rt.main[0]
	}
	if s.dlq != nil {
		rt.dlq = byStage[s.dlq]
	}
	return rt
}

var hashSeed = maphash.MakeSeed()

// pick returns the task of d's stage that rec goes to.
func (d *dest) pick(rec *stdlib.Record) (int, error) {
	if d.fixed >= 0 {
		return d.fixed, nil
	}
	n := len(d.bufs)
	s := d.stage
	if s.partBy != nil {
		v, err := s.partBy.eval(&d.vm, rec)
		if err != nil {
			return 0, fmt.Errorf("stage %q: partition_by: %w", s.st.Name, err)
		}
		return int(hashValue(v) % uint64(n)), nil
	}
	if d.lastTask >= 0 && rec.Pos.Partition == d.lastPart && rec.Pos.Source == d.lastSrc {
		return d.lastTask, nil
	}
	var h maphash.Hash
	h.SetSeed(hashSeed)
	h.WriteString(rec.Pos.Source)
	h.WriteByte(0)
	h.WriteString(rec.Pos.Partition)
	d.lastSrc, d.lastPart = rec.Pos.Source, rec.Pos.Partition
	d.lastTask = int(h.Sum64() % uint64(n))
	return d.lastTask, nil
}

func hashValue(v any) uint64 {
	switch v := v.(type) {
	case string:
		return maphash.String(hashSeed, v)
	case []byte:
		return maphash.Bytes(hashSeed, v)
	case int64:
		return maphash.Comparable(hashSeed, v)
	case float64:
		return maphash.Comparable(hashSeed, v)
	case bool:
		return maphash.Comparable(hashSeed, v)
	case nil:
		return 0
	}
	return maphash.String(hashSeed, fmt.Sprint(v))
}

// emit appends rec to the buffers of ds. Records fanned out to a stage that
// may mutate them are deep-copied.
func (rt *router) emit(ctx context.Context, rec stdlib.Record, ds []*dest) error {
	for _, d := range ds {
		t, err := d.pick(&rec)
		if err != nil {
			return err
		}
		r := rec
		if len(ds) > 1 && d.stage.clone {
			r.Value = deepCopy(r.Value)
		}
		b := d.bufs[t]
		if b == nil {
			b = rt.r.recycler.Batch(0)
		}
		b = append(b, r)
		if len(b) >= rt.r.cfg.BatchSize {
			d.bufs[t] = nil
			if err := rt.deliver(ctx, d, t, b); err != nil {
				return err
			}
		} else {
			d.bufs[t] = b
		}
	}
	if len(ds) > 0 && ds[0] != rt.dlq {
		rt.sent++
	}
	return nil
}

// sendDirect hands batch b, already holding only records for the main
// output, to the direct destination; buffered records go first.
func (rt *router) sendDirect(ctx context.Context, b []stdlib.Record) error {
	d := rt.direct
	if buf := d.bufs[d.fixed]; len(buf) > 0 {
		d.bufs[d.fixed] = nil
		if err := rt.deliver(ctx, d, d.fixed, buf); err != nil {
			return err
		}
	}
	rt.sent += int64(len(b))
	if len(b) == 0 {
		return nil
	}
	return rt.deliver(ctx, d, d.fixed, b)
}

// deliver hands batch b to task t of d's stage: on its channel, or by a
// call when that task is chained to this one.
func (rt *router) deliver(ctx context.Context, d *dest, t int, b []stdlib.Record) error {
	if d.chained != nil {
		return d.chained.chainedCall(func() error { return d.chained.batch(ctx, b) })
	}
	return rt.r.send(ctx, d.stage.inboxes[t][d.from], message{from: d.from, batch: b})
}

// flush sends every non-empty buffer.
func (rt *router) flush(ctx context.Context) error {
	for _, d := range rt.dests {
		for t, b := range d.bufs {
			if len(b) == 0 {
				continue
			}
			d.bufs[t] = nil
			if err := rt.deliver(ctx, d, t, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// control flushes and then sends m (a barrier or end of stream) to every
// task of every downstream stage.
func (rt *router) control(ctx context.Context, m message) error {
	if err := rt.flush(ctx); err != nil {
		return err
	}
	for _, d := range rt.dests {
		if c := d.chained; c != nil {
			if err := c.chainedCall(func() error {
				if m.eos {
					return c.end(ctx)
				}
				return c.barrier(ctx, m.barrier)
			}); err != nil {
				return err
			}
			continue
		}
		m.from = d.from
		for _, in := range d.stage.inboxes {
			if err := rt.r.send(ctx, in[d.from], m); err != nil {
				return err
			}
		}
	}
	return nil
}

// deepCopy copies maps and lists of a record value.
func deepCopy(v any) any {
	switch v := v.(type) {
	case *stdlib.Row:
		return deepCopy(v.Map())
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = deepCopy(x)
		}
		return l
	case []byte:
		return append([]byte(nil), v...)
	}
	return v
}
