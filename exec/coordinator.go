package exec

import (
	"fmt"
	"time"

	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
)

// coordinator starts checkpoints and completes them once every source task
// reported and every sink task acknowledged (DESIGN §4). It runs on one
// goroutine; each message it takes has a method of its own, and a method
// returning false ends the run's coordination (the run failed or its final
// checkpoint completed).
type coordinator struct {
	r      *run
	next   uint64                      // id of the next checkpoint
	stored map[partKey]stdlib.Position // what the store holds, and grows to

	cur       *pending // the checkpoint in flight, or nil
	began     time.Time
	done      int  // source tasks exhausted or stopped
	finishing bool // every source task is done: the final checkpoint is due
	again     bool // a checkpoint was asked for while one was in flight

	// Records the source tasks had read when the last checkpoint started,
	// and at the previous look for quiet input (quiet).
	readAtStart, readAtLook int64
}

// pending is a checkpoint in flight.
type pending struct {
	id      uint64
	final   bool
	reports int
	acks    int
	pos     map[*sourceTask][]stdlib.Position
}

// coordinate runs the coordinator until the run fails or its final
// checkpoint completed.
func (r *run) coordinate() {
	if len(r.sources) == 0 {
		return
	}
	c := &coordinator{r: r, next: 1, stored: map[partKey]stdlib.Position{}}
	if r.prev != nil {
		c.next = r.prev.ID + 1
		for _, p := range r.prev.Positions {
			c.stored[partKey{p.Source, p.Partition}] = p
		}
	}
	interval := time.Duration(r.p.Checkpoint)
	if interval <= 0 {
		interval = defaultCheckpoint
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	every := quietLook(interval)
	look := time.NewTicker(every)
	defer look.Stop()
	for {
		var ok bool
		select {
		case <-r.ictx.Done():
			return
		case <-tick.C:
			ok = c.tick()
		case <-look.C:
			ok = c.quiet(every)
		case reply := <-r.cpReq:
			ok = c.request(reply)
		case m := <-r.ctrl:
			switch m.kind {
			case ctrlDone:
				ok = c.sourceDone()
			case ctrlReport:
				ok = c.report(m)
			case ctrlAck:
				ok = c.ack(m)
			}
		}
		if !ok || !c.complete() {
			return
		}
	}
}

// start sends the barrier of a new checkpoint to every source task.
func (c *coordinator) start(final bool) bool {
	c.readAtStart = c.read() // before the barriers: what it counts, they cover
	c.cur = &pending{id: c.next, final: final, pos: map[*sourceTask][]stdlib.Position{}}
	c.began = time.Now()
	c.next++
	for _, t := range c.r.sources {
		select {
		case t.req <- &barrier{id: c.cur.id, final: final}:
		case <-c.r.ictx.Done():
			return false
		}
	}
	return true
}

// tick starts a periodic checkpoint unless one is in flight.
func (c *coordinator) tick() bool {
	if c.cur == nil && !c.finishing {
		return c.start(false)
	}
	return true
}

// quietLook is how often the coordinator looks whether the input went
// quiet: a twentieth of the checkpoint interval, between 5 ms and 250 ms.
func quietLook(interval time.Duration) time.Duration {
	return min(max(interval/20, 5*time.Millisecond), 250*time.Millisecond)
}

// quietLooks is how many looks a Read of a source that cannot tell
// whether it is caught up (not a [stdlib.CaughtUpper]) must have blocked
// without records before its input counts as quiet.
const quietLooks = 4

// read is how many records the source tasks have read.
func (c *coordinator) read() int64 {
	var n int64
	for _, t := range c.r.sources {
		n += t.s.metrics[t.task].received.Load()
	}
	return n
}

// quiet starts a checkpoint ahead of the interval when the input went
// quiet: the sources read records since the last checkpoint started, none
// since the previous look, and every source task waits for input (idle).
// What the input brought is then made durable (for exactly-once sinks:
// visible) now rather than up to an interval later. Input that keeps
// coming, or that the pipeline is still working through (a source held
// up handing on its batches, or behind its input's end), is checkpointed
// at the interval only, so that a loaded pipeline's batches and
// transactions are not cut short.
func (c *coordinator) quiet(look time.Duration) bool {
	n := c.read()
	still := n == c.readAtLook
	c.readAtLook = n
	if still && n != c.readAtStart && c.cur == nil && !c.finishing && c.idle(quietLooks*look) {
		c.r.cfg.Logger.Debug("input quiet: checkpoint ahead of the interval", "id", c.next)
		return c.start(false)
	}
	return true
}

// idle reports whether every source task waits for input: its source has
// nothing more waiting (sourceTask.caughtUp), or, when the source cannot
// tell, its Read has blocked for at least wait.
func (c *coordinator) idle(wait time.Duration) bool {
	now := time.Now().UnixNano()
	for _, t := range c.r.sources {
		if t.caughtUp.Load() {
			continue
		}
		if since := t.readSince.Load(); t.cu == nil && since != 0 && now-since >= int64(wait) {
			continue
		}
		return false
	}
	return true
}

// request answers a checkpoint asked for now (Handle.Checkpoint) with the
// id of one that starts after the request.
func (c *coordinator) request(reply chan uint64) bool {
	switch {
	case c.cur == nil && !c.finishing:
		if !c.start(false) {
			return false
		}
		reply <- c.cur.id
	case c.cur != nil && !c.cur.final:
		c.again = true
		reply <- c.cur.id + 1
	default: // the final checkpoint is under way
		reply <- c.next - 1
	}
	return true
}

// sourceDone counts a source task that is exhausted or stopped; after the
// last one the final checkpoint is due.
func (c *coordinator) sourceDone() bool {
	c.done++
	if c.done == len(c.r.sources) {
		c.finishing = true
		if c.cur == nil {
			return c.start(true)
		}
	}
	return true
}

// report takes a source task's positions at the barrier in flight.
func (c *coordinator) report(m ctrlMsg) bool {
	if c.cur == nil || m.id != c.cur.id {
		c.r.fail(fmt.Errorf("internal: report for checkpoint %d out of turn", m.id))
		return false
	}
	c.cur.reports++
	c.cur.pos[m.src] = m.pos
	return true
}

// ack counts a sink task that made the checkpoint in flight durable.
func (c *coordinator) ack(m ctrlMsg) bool {
	if c.cur == nil || m.id != c.cur.id {
		c.r.fail(fmt.Errorf("internal: acknowledgement for checkpoint %d out of turn", m.id))
		return false
	}
	c.cur.acks++
	return true
}

// complete completes the checkpoint in flight once every source task
// reported and every sink task acknowledged it: it saves the positions,
// posts them to the sources to commit, wakes those waiting, and starts
// the next checkpoint when one is due. It returns false when
// coordination ends.
func (c *coordinator) complete() bool {
	r, cur := c.r, c.cur
	if cur == nil || cur.reports < len(r.sources) || cur.acks < len(r.sinks) {
		return true
	}
	// Stored positions only grow: a partition resumed below the store
	// for some sink's sake reports a lower position until it catches up,
	// and the sinks keep their own positions. A position of another
	// incarnation of the partition is replaced.
	for _, ps := range cur.pos {
		for _, p := range ps {
			k := partKey{p.Source, p.Partition}
			if old, ok := c.stored[k]; !ok || p.Offset > old.Offset || p.Identity != old.Identity {
				c.stored[k] = p
			}
		}
	}
	cp := state.Checkpoint{ID: cur.id, Time: time.Now().UTC().Truncate(time.Millisecond)}
	for _, p := range c.stored {
		cp.Positions = append(cp.Positions, p)
	}
	if err := r.store.Save(cp); err != nil {
		r.cpFailed.Add(1)
		r.fail(fmt.Errorf("checkpoint %d: %w", cur.id, err))
		return false
	}
	sortPositions(cp.Positions)
	r.pubMu.Lock()
	r.pubCP = cp
	r.pubMu.Unlock()
	// Positions are posted before the checkpoint counts as completed: a
	// Settle that saw it completed commits them.
	for t, ps := range cur.pos {
		commit := make([]stdlib.Position, len(ps))
		for i, p := range ps {
			commit[i] = c.stored[partKey{p.Source, p.Partition}]
		}
		t.postCommit(commit)
	}
	r.lastCP.Store(cur.id)
	r.cpDur.since(c.began)
	r.cpCount.Add(1)
	r.lastCPTime.Store(time.Now().UnixNano())
	r.cpMu.Lock()
	close(r.cpWake)
	r.cpWake = make(chan struct{})
	r.cpMu.Unlock()
	r.cfg.Logger.Debug("checkpoint completed", "id", cur.id, "partitions", len(cp.Positions))
	if cur.final {
		close(r.finished)
		return false
	}
	c.cur = nil
	if c.finishing {
		return c.start(true)
	}
	if c.again {
		c.again = false
		return c.start(false)
	}
	return true
}
