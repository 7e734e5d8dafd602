package exec

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"pipe.dev/pipe/stdlib"
)

// sourceTask drives one Source from one goroutine: it reads batches,
// injects barriers between reads, and commits completed checkpoints.
type sourceTask struct {
	r      *run
	s      *stageRT
	task   int
	src    stdlib.Source
	rt     *router
	resume stdlib.ResumeMap
	opened bool

	req chan *barrier

	commitMu  sync.Mutex
	commitPos []stdlib.Position
	commitCh  chan struct{}
	committed map[partKey]int64

	// last emitted position per partition; cur caches the partition of the
	// previous record so the map is touched once per partition run.
	last    map[partKey]int64
	cur     partKey
	curOff  int64
	curSet  bool
	stopped bool
}

func newSourceTask(r *run, s *stageRT, task int, src stdlib.Source) *sourceTask {
	return &sourceTask{
		r: r, s: s, task: task, src: src,
		req:       make(chan *barrier, 1),
		commitCh:  make(chan struct{}, 1),
		committed: map[partKey]int64{},
		last:      map[partKey]int64{},
	}
}

// postCommit hands the task positions to commit; called by the coordinator
// after the checkpoint covering them is durable.
func (t *sourceTask) postCommit(pos []stdlib.Position) {
	t.commitMu.Lock()
	t.commitPos = pos
	t.commitMu.Unlock()
	select {
	case t.commitCh <- struct{}{}:
	default:
	}
}

// commit commits the posted positions that advanced.
func (t *sourceTask) commit(ctx context.Context) error {
	t.commitMu.Lock()
	pos := t.commitPos
	t.commitPos = nil
	t.commitMu.Unlock()
	var todo []stdlib.Position
	for _, p := range pos {
		k := partKey{p.Source, p.Partition}
		if off, ok := t.committed[k]; ok && off >= p.Offset {
			continue
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return nil
	}
	if err := t.src.Commit(ctx, todo); err != nil {
		return &StageError{Stage: t.s.st.Name, At: t.s.at, Err: fmt.Errorf("committing positions: %w", err)}
	}
	for _, p := range todo {
		t.committed[partKey{p.Source, p.Partition}] = p.Offset
	}
	return nil
}

func (t *sourceTask) run(ctx context.Context) (err error) {
	defer func() {
		if cerr := t.src.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = &StageError{Stage: t.s.st.Name, At: t.s.at, Err: fmt.Errorf("closing: %w", cerr)}
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			err = &StageError{Stage: t.s.st.Name, At: t.s.at, Err: fmt.Errorf("panic: %v", p)}
		}
	}()
	t.rt = newRouter(t.r, t.s, t.task)
	for {
		if t.stopped {
			select {
			case b := <-t.req:
				if done, err := t.inject(ctx, b); done || err != nil {
					return err
				}
			case <-t.commitCh:
				if err := t.commit(ctx); err != nil {
					return err
				}
			case <-ctx.Done():
				return errStopped
			}
			continue
		}
		select {
		case b := <-t.req:
			if _, err := t.inject(ctx, b); err != nil {
				return err
			}
		case <-t.commitCh:
			if err := t.commit(ctx); err != nil {
				return err
			}
		default:
		}
		batch, rerr := t.src.Read(t.r.rctx)
		if len(batch) > 0 {
			if err := t.emit(ctx, batch); err != nil {
				return err
			}
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, stdlib.ErrEndOfInput) || t.r.rctx.Err() != nil:
			if ctx.Err() != nil {
				return errStopped
			}
			t.stopped = true
			if err := t.rt.flush(ctx); err != nil {
				return err
			}
			if err := t.r.control(ctrlMsg{kind: ctrlDone, src: t}); err != nil {
				return err
			}
		default:
			return &StageError{Stage: t.s.st.Name, At: t.s.at, Err: rerr}
		}
	}
}

// emit routes a batch read from the source (the batch is ours: when the
// main output is a single task it goes on as it is).
func (t *sourceTask) emit(ctx context.Context, batch []stdlib.Record) error {
	t.s.in.Add(int64(len(batch)))
	sent := t.rt.sent
	direct := t.rt.direct != nil
	n := 0
	for i := range batch {
		rec := &batch[i]
		if rec.Pos.Source == "" {
			rec.Pos.Source = t.s.st.Name
		}
		if !t.curSet || rec.Pos.Partition != t.cur.partition || rec.Pos.Source != t.cur.source {
			if t.curSet {
				t.last[t.cur] = t.curOff
			}
			t.cur, t.curSet = partKey{rec.Pos.Source, rec.Pos.Partition}, true
		}
		t.curOff = rec.Pos.Offset
		if rec.Err != nil {
			if err := t.r.failure(ctx, t.s, t.rt, t.s.policy, rec, t.s.at, fmt.Errorf("malformed input: %w", rec.Err), nil); err != nil {
				return err
			}
			continue
		}
		if direct {
			if n != i {
				batch[n] = *rec
			}
			n++
			continue
		}
		if err := t.rt.emit(ctx, *rec, t.rt.main); err != nil {
			return err
		}
	}
	if direct {
		clear(batch[n:])
		if err := t.rt.sendDirect(ctx, batch[:n]); err != nil {
			return err
		}
	}
	t.s.out.Add(t.rt.sent - sent)
	return t.rt.flush(ctx)
}

// inject sends barrier b downstream with the task's positions and reports
// them to the coordinator. After the final barrier it ends the stream,
// waits for the final checkpoint and commits it; done is then true.
func (t *sourceTask) inject(ctx context.Context, b *barrier) (done bool, err error) {
	if t.curSet {
		t.last[t.cur] = t.curOff
	}
	pos := make([]stdlib.Position, 0, len(t.last))
	for k, off := range t.last {
		pos = append(pos, stdlib.Position{Source: k.source, Partition: k.partition, Offset: off})
	}
	mine := &barrier{id: b.id, final: b.final, pos: pos}
	if err := t.rt.control(ctx, message{barrier: mine}); err != nil {
		return false, err
	}
	if err := t.r.control(ctrlMsg{kind: ctrlReport, id: b.id, src: t, pos: pos}); err != nil {
		return false, err
	}
	if !b.final {
		return false, nil
	}
	if err := t.rt.control(ctx, message{eos: true}); err != nil {
		return false, err
	}
	select {
	case <-t.r.finished:
	case <-ctx.Done():
		return true, errStopped
	}
	return true, t.commit(ctx)
}
