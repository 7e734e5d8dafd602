package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// StatePaused is the state of an instance whose pipeline is paused: its
// run ended with a final checkpoint and it reads nothing until resumed.
const StatePaused = "paused"

// targetPrefix starts the config topic's keys of pipelines' target states
// (Kafka Connect's "target-state-"); a pipeline name holds no ':'.
const targetPrefix = "target-state:"

// target is the value of a target-state record.
type target struct {
	State string `json:"state"` // "paused" or "running"
}

// readTarget applies a target-state record; s.mu held.
func (s *store) readTarget(name string, val []byte) {
	var t target
	if val == nil || json.Unmarshal(val, &t) != nil {
		delete(s.paused, name)
		return
	}
	if t.State == StatePaused {
		s.paused[name] = true
	} else {
		delete(s.paused, name)
	}
}

// pausedState reports whether pipeline name is paused, and a channel
// closed at the next record read.
func (s *store) pausedState(name string) (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused[name], s.changed
}

// setTarget writes a pipeline's target state and returns once this store
// has read it back.
func (s *store) setTarget(ctx context.Context, name string, paused bool) error {
	t := target{State: StateRunning}
	if paused {
		t.State = StatePaused
	}
	val, _ := json.Marshal(t)
	r, err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.config, Key: []byte(targetPrefix + name), Value: val}).First()
	if err != nil {
		return fmt.Errorf("writing to %s: %w", s.config, err)
	}
	return s.waitRead(ctx, s.config, r.Offset+1)
}

// pausable returns a context of ctx that is cancelled as soon as pipeline
// name is paused: the instance's run drains and takes a final checkpoint.
func (w *Worker) pausable(ctx context.Context, name string) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			p, ch := w.store.pausedState(name)
			if p {
				cancel()
				return
			}
			select {
			case <-ch:
			case <-rctx.Done():
				return
			}
		}
	}()
	return rctx, cancel
}

// awaitResumed blocks while pipeline name is paused, calling onPause once
// when it starts waiting. It returns false when ctx is done first.
func (w *Worker) awaitResumed(ctx context.Context, name string, onPause func()) bool {
	told := false
	for {
		p, ch := w.store.pausedState(name)
		if !p {
			return true
		}
		if !told {
			onPause()
			told = true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}
