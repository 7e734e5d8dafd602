package exec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// startSink is a memSink whose checkpoints finish on another goroutine
// (stdlib.CheckpointStarter): StartCheckpoint takes what was written and
// finish makes it durable. attrs (beside memSink's): wait_write (finish of
// a checkpoint that records follow waits for the next Write: an executor
// holding Write back until finish returned would never make one, and the
// finish fails), fail_finish (finish of this checkpoint id fails).
type startSink struct {
	*memSink
	written atomic.Int64
}

func (s *startSink) Write(ctx context.Context, b []stdlib.Record) error {
	err := s.memSink.Write(ctx, b)
	s.written.Add(1)
	return err
}

func (s *startSink) StartCheckpoint(_ context.Context, cp stdlib.Checkpoint) (func(context.Context) error, error) {
	taken := s.buf
	s.buf = nil
	parts, last := s.cfg.Int("partitions"), s.cfg.Int("count")-1
	more := int64(len(cp.Positions)) < parts
	for _, p := range cp.Positions {
		more = more || p.Offset < last
	}
	seen := s.written.Load()
	return func(ctx context.Context) error {
		if cp.ID == uint64(s.cfg.Int("fail_finish")) {
			return errors.New("simulated sync failure")
		}
		if more && s.cfg.Bool("wait_write") {
			deadline := time.Now().Add(10 * time.Second)
			for s.written.Load() == seen {
				if time.Now().After(deadline) {
					return errors.New("no Write while it finished")
				}
				time.Sleep(time.Millisecond)
			}
		}
		s.st.mu.Lock()
		defer s.st.mu.Unlock()
		if more && s.cfg.Bool("wait_write") {
			s.st.overlaps++
		}
		s.commit(taken, cp)
		return nil
	}, nil
}

// TestCheckpointFinishesWhileWriting: a CheckpointStarter sink's checkpoint
// becomes durable while the sink task goes on writing, and the output is
// still every record once, in order.
func TestCheckpointFinishesWhileWriting(t *testing.T) {
	env := newTestEnv(t)
	const parts, count = 2, 2000
	p := newPlan(time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("partitions", ival(parts)), attr("count", ival(count)), attr("batch", ival(10)), attr("delay", dur(time.Millisecond))),
		stage("out", "sink", "memsink_start", 2, attr("exactly", bval(true)), attr("wait_write", bval(true)),
			attr("partitions", ival(parts)), attr("count", ival(count))),
	}, edge("src", "out"))
	runOK(t, env, p)
	got := offsetsByPart(env.output("out"))
	for part := range parts {
		offs := got[fmt.Sprintf("p%d", part)]
		if len(offs) != count {
			t.Fatalf("partition p%d: %d records, want %d", part, len(offs), count)
		}
		for i, off := range offs {
			if off != int64(i) {
				t.Fatalf("partition p%d: record %d has offset %d", part, i, off)
			}
		}
	}
	st := env.sink("out")
	st.mu.Lock()
	overlaps := st.overlaps
	st.mu.Unlock()
	if overlaps == 0 {
		t.Fatalf("no checkpoint finished before the last record: the test does not exercise finishing while writing")
	}
	t.Logf("%d checkpoints finished while the sink wrote on", overlaps)
}

// TestCheckpointFinishFails: a finish that fails stops the run with the
// sink's error, though the sink task waits for input meanwhile.
func TestCheckpointFinishFails(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(10*time.Millisecond, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(50)), attr("endless", bval(true)), attr("delay", dur(time.Second))),
		stage("out", "sink", "memsink_start", 2, attr("exactly", bval(true)), attr("fail_finish", ival(1))),
	}, edge("src", "out"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := env.run(ctx, p, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "simulated sync failure") {
		t.Fatalf("got %v, want the checkpoint's failure", err)
	}
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "out" {
		t.Fatalf("got %v, want a StageError of stage out", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the run did not stop on the failed checkpoint")
	}
}
