package core

import (
	"context"
	"os"
	"slices"
	"sync"

	"pipe.dev/pipe/stdlib"
)

// fileLag keeps how far a file source task read each of its files, for
// Lag, which runs on another goroutine than Read.
type fileLag struct {
	mu   sync.Mutex
	read map[string]fileRead // path -> what was read of the file there
}

// fileRead is the partition a file holds and the offset after the last
// line returned.
type fileRead struct {
	partition string
	off       int64
}

func (l *fileLag) note(path, partition string, off int64) {
	l.mu.Lock()
	if l.read == nil {
		l.read = map[string]fileRead{}
	}
	l.read[path] = fileRead{partition, off}
	l.mu.Unlock()
}

// Lag implements stdlib.Lagger: the bytes of each file past what was read.
func (s *fileSource) Lag(ctx context.Context) []stdlib.Lag {
	s.lag.mu.Lock()
	paths := make([]string, 0, len(s.lag.read))
	for p := range s.lag.read {
		paths = append(paths, p)
	}
	s.lag.mu.Unlock()
	slices.Sort(paths)
	var out []stdlib.Lag
	for _, p := range paths {
		if ctx.Err() != nil {
			break
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		s.lag.mu.Lock()
		r := s.lag.read[p]
		s.lag.mu.Unlock()
		out = append(out, stdlib.Lag{Partition: r.partition, Behind: max(st.Size()-r.off, 0), Unit: "bytes"})
	}
	return out
}
