package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

// sourceLag is what Lag reports, from another goroutine than Read.
type sourceLag struct {
	mu     sync.Mutex
	known  bool
	behind int64
	unit   string
}

// noteLag records how far the source is behind after a read of n rows: 0
// when the read found fewer rows than a batch (caught up); otherwise, in
// incrementing mode, the greatest id of the table minus the last one read
// ("ids": the rows behind when ids have no gaps), and in timestamp modes
// how old the last row read is ("ms"). Bulk reads report nothing.
func (s *source) noteLag(ctx context.Context, n int) {
	behind, unit := int64(0), "ids"
	switch {
	case s.Mode == sqlcommon.ModeBulk:
		return
	case s.Mode != sqlcommon.ModeIncrementing:
		unit = "ms"
		if n >= s.Batch && s.HasLast {
			behind = max(time.Since(time.UnixMicro(s.Last)).Milliseconds(), 0)
		}
	case n >= s.Batch && s.HasLast:
		var top *int64
		if err := s.conn.QueryRow(ctx, "SELECT max("+quote(s.Inc)+") FROM "+s.from()).Scan(&top); err != nil || top == nil {
			return
		}
		behind = max(*top-s.Last, 0)
	}
	s.lag.mu.Lock()
	s.lag.known, s.lag.behind, s.lag.unit = true, behind, unit
	s.lag.mu.Unlock()
}

// Lag implements stdlib.Lagger.
func (s *source) Lag(context.Context) []stdlib.Lag {
	s.lag.mu.Lock()
	defer s.lag.mu.Unlock()
	if !s.lag.known {
		return nil
	}
	return []stdlib.Lag{{Partition: s.Partition, Behind: s.lag.behind, Unit: s.lag.unit}}
}

// cdcLag is what the postgres_cdc source's Lag reports: the WAL the slot
// holds back, from the greatest WAL position the source saw (keepalives,
// heartbeats) down to the slot's confirmed position.
type cdcLag struct {
	mu    sync.Mutex
	end   uint64
	acked uint64
}

// noteEnd records a WAL position the server reached.
func (s *cdcSource) noteEnd(lsn pglogrepl.LSN) {
	s.lag.mu.Lock()
	s.lag.end = max(s.lag.end, uint64(lsn))
	s.lag.mu.Unlock()
}

// noteAcked records the position confirmed to the server.
func (s *cdcSource) noteAcked() {
	s.lag.mu.Lock()
	s.lag.acked = uint64(s.acked)
	s.lag.mu.Unlock()
}

// Lag implements stdlib.Lagger: the slot's lag in bytes of WAL, once a
// WAL position of the server is known.
func (s *cdcSource) Lag(context.Context) []stdlib.Lag {
	s.lag.mu.Lock()
	defer s.lag.mu.Unlock()
	if s.lag.end == 0 || s.task != 0 {
		return nil
	}
	return []stdlib.Lag{{Partition: s.slot, Behind: int64(s.lag.end - min(s.lag.acked, s.lag.end)), Unit: "bytes"}}
}
