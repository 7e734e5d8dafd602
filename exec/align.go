package exec

import (
	"context"

	"pipe.dev/pipe/stdlib"
)

// handler processes what a task receives.
type handler interface {
	// batch processes one batch, which it owns: it passes it on, recycles
	// it or drops it.
	batch(ctx context.Context, b []stdlib.Record) error
	// barrier handles a barrier that arrived from every sender.
	barrier(ctx context.Context, b *barrier) error
	// end runs when every sender ended its stream.
	end(ctx context.Context) error
}

// receive runs a task's input loop: it hands batches to h, aligns barriers
// (input from a sender whose barrier arrived is held back until the
// barrier arrived from every sender still running) and returns when every
// sender ended its stream.
func (r *run) receive(ctx context.Context, in chan message, senders int, h handler) error {
	blocked := make([]bool, senders)
	ended := make([]bool, senders)
	nblocked, nended := 0, 0
	var held, replay []message
	var parts []*barrier
	for nended < senders {
		var m message
		if len(replay) > 0 {
			m = replay[0]
			replay[0] = message{}
			replay = replay[1:]
		} else {
			select {
			case m = <-in:
			case <-ctx.Done():
				return errStopped
			}
		}
		if blocked[m.from] {
			held = append(held, m)
			continue
		}
		switch {
		case m.batch != nil:
			if err := h.batch(ctx, m.batch); err != nil {
				return err
			}
		case m.barrier != nil:
			blocked[m.from] = true
			nblocked++
			parts = append(parts, m.barrier)
		case m.eos:
			ended[m.from] = true
			nended++
		}
		if nblocked > 0 && nblocked == senders-nended {
			b := mergeBarriers(parts)
			parts = parts[:0]
			if err := h.barrier(ctx, b); err != nil {
				return err
			}
			clear(blocked)
			nblocked = 0
			replay = append(held, replay...)
			held = nil
		}
	}
	return h.end(ctx)
}

// mergeBarriers merges the barriers of one checkpoint from several senders,
// keeping the highest position per partition (a partition reached through
// two paths carries the same position on both).
func mergeBarriers(parts []*barrier) *barrier {
	if len(parts) == 1 {
		return parts[0]
	}
	b := &barrier{id: parts[0].id}
	idx := map[partKey]int{}
	for _, p := range parts {
		b.final = b.final || p.final
		for _, pos := range p.pos {
			k := partKey{pos.Source, pos.Partition}
			if i, ok := idx[k]; ok {
				if pos.Offset > b.pos[i].Offset {
					b.pos[i] = pos
				}
				continue
			}
			idx[k] = len(b.pos)
			b.pos = append(b.pos, pos)
		}
	}
	return b
}
