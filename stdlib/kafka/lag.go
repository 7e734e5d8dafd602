package kafka

import (
	"context"
	"sort"
	"sync"

	"pipe.dev/pipe/stdlib"
)

// partLag keeps, per partition the source reads, its high watermark at
// the last fetch minus the next offset to read: what Lag reports, from
// another goroutine than Read.
type partLag struct {
	mu     sync.Mutex
	behind map[string]int64
}

func (l *partLag) note(partition string, behind int64) {
	l.mu.Lock()
	if l.behind == nil {
		l.behind = map[string]int64{}
	}
	l.behind[partition] = max(behind, 0)
	l.mu.Unlock()
}

// reset forgets every partition (the group assigned others).
func (l *partLag) reset() {
	l.mu.Lock()
	l.behind = nil
	l.mu.Unlock()
}

// Lag implements stdlib.Lagger: records of each partition past the
// position, as of the last fetch (every max_wait at most while idle).
func (s *source) Lag(context.Context) []stdlib.Lag {
	s.lag.mu.Lock()
	defer s.lag.mu.Unlock()
	out := make([]stdlib.Lag, 0, len(s.lag.behind))
	for p, n := range s.lag.behind {
		out = append(out, stdlib.Lag{Partition: p, Behind: n, Unit: "records"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}
