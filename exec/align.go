package exec

import (
	"context"
	"reflect"

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

// receive runs a task's input loop over one channel per sender: it hands
// batches to h and aligns barriers — once a sender's barrier arrived, that
// sender's channel is not read (it fills up and the sender blocks) until
// the barrier arrived from every sender still running. It returns when
// every sender ended its stream.
func (r *run) receive(ctx context.Context, ins []chan message, h handler) error {
	if len(ins) == 1 {
		return r.receiveOne(ctx, ins[0], h)
	}
	cases := make([]reflect.SelectCase, len(ins)+1)
	cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}
	for i, in := range ins {
		cases[i+1] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(in)}
	}
	senders := len(ins)
	ended := make([]bool, senders)
	nblocked, nended := 0, 0
	var parts []*barrier
	for nended < senders {
		i, v, _ := reflect.Select(cases)
		if i == 0 {
			return errStopped
		}
		m := v.Interface().(message)
		switch {
		case m.batch != nil:
			if err := h.batch(ctx, m.batch); err != nil {
				return err
			}
		case m.barrier != nil:
			cases[i].Chan = reflect.Value{} // stop reading this sender
			nblocked++
			parts = append(parts, m.barrier)
		case m.eos:
			cases[i].Chan = reflect.Value{}
			ended[i-1] = true
			nended++
		}
		if nblocked > 0 && nblocked == senders-nended {
			b := mergeBarriers(parts)
			parts = parts[:0]
			if err := h.barrier(ctx, b); err != nil {
				return err
			}
			nblocked = 0
			for j, in := range ins {
				if !ended[j] {
					cases[j+1].Chan = reflect.ValueOf(in)
				}
			}
		}
	}
	return h.end(ctx)
}

// receiveOne is receive for a task with a single sender: nothing to align.
func (r *run) receiveOne(ctx context.Context, in chan message, h handler) error {
	for {
		var m message
		select {
		case m = <-in:
		case <-ctx.Done():
			return errStopped
		}
		switch {
		case m.batch != nil:
			if err := h.batch(ctx, m.batch); err != nil {
				return err
			}
		case m.barrier != nil:
			if err := h.barrier(ctx, m.barrier); err != nil {
				return err
			}
		case m.eos:
			return h.end(ctx)
		}
	}
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
