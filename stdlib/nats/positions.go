package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pipe.dev/pipe/stdlib"
)

// offline connects for `pipe offsets` (the sink is built, not opened) and
// runs op with the offsets bucket, nil when it does not exist; the
// identity of the sink's stream is looked up first.
func (s *sink) offline(ctx context.Context, op func(kv jetstream.KeyValue) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, err := s.conn.connect(ctx, s.log, s.what())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s.target = ""
	if s.stream != "" {
		st, err := js.Stream(ctx, s.stream)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			s.target = "none"
		case err != nil:
			return fmt.Errorf("stream %q: %w", s.stream, err)
		default:
			s.target = streamIdentity(s.stream, st.CachedInfo().Created)
		}
	}
	kv, err := js.KeyValue(ctx, s.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return op(nil)
	}
	if err != nil {
		return fmt.Errorf("offsets bucket %q: %w", s.bucket, err)
	}
	return op(kv)
}

// taskKey is the key of task of the stage in the offsets bucket.
func (s *sink) taskKey(task int) string {
	c := s.cfg
	c.Task = task
	return (&sink{stage: stage{cfg: c}}).key()
}

// StoredPositions implements stdlib.PositionStore: the positions every task
// of the stage keeps for its stream, the lowest of a partition when tasks
// differ.
func (s *sink) StoredPositions(ctx context.Context) ([]stdlib.Position, error) {
	if s.cfg.Delivery != stdlib.ExactlyOnce {
		return nil, nil
	}
	var out []stdlib.Position
	err := s.offline(ctx, func(kv jetstream.KeyValue) error {
		if kv == nil {
			return nil
		}
		for task := range max(s.cfg.Tasks, 1) {
			e, err := kv.Get(ctx, s.taskKey(task))
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("offsets bucket %q: %w", s.bucket, err)
			}
			var st storedPositions
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return fmt.Errorf("offsets bucket %q, key %s: %w", s.bucket, s.taskKey(task), err)
			}
			if st.Target != s.target {
				continue
			}
			for _, p := range st.Positions {
				i := slices.IndexFunc(out, func(q stdlib.Position) bool { return q.Source == p.Source && q.Partition == p.Partition })
				switch {
				case i < 0:
					out = append(out, p)
				case p.Offset < out[i].Offset:
					out[i] = p
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetPositions implements stdlib.PositionStore: in every task's key, the
// positions of source for the partitions in reset (all when empty) are
// replaced by set.
func (s *sink) SetPositions(ctx context.Context, source string, reset []string, set []stdlib.Position) error {
	if s.cfg.Delivery != stdlib.ExactlyOnce {
		return nil
	}
	for _, p := range set {
		if p.Source != source {
			return fmt.Errorf("position %s is not of source %q", p, source)
		}
	}
	err := s.offline(ctx, func(kv jetstream.KeyValue) error {
		if kv == nil {
			if len(set) == 0 {
				return nil
			}
			return fmt.Errorf("offsets bucket %q does not exist: run the pipeline once first", s.bucket)
		}
		if s.target == "none" {
			return fmt.Errorf("stream %q does not exist: positions are kept for a stream", s.stream)
		}
		for task := range max(s.cfg.Tasks, 1) {
			key := s.taskKey(task)
			st := storedPositions{Target: s.target}
			e, err := kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("offsets bucket %q: %w", s.bucket, err)
			default:
				var old storedPositions
				if err := json.Unmarshal(e.Value(), &old); err != nil {
					return fmt.Errorf("offsets bucket %q, key %s: %w", s.bucket, key, err)
				}
				if old.Target == s.target {
					st.Positions = slices.DeleteFunc(old.Positions, func(p stdlib.Position) bool {
						return p.Source == source && (len(reset) == 0 || slices.Contains(reset, p.Partition))
					})
				}
			}
			st.Positions = append(st.Positions, set...)
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if _, err := kv.Put(ctx, key, b); err != nil {
				return fmt.Errorf("offsets bucket %q, key %s: %w", s.bucket, key, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return nil
}

// streamIdentity names a stream's incarnation: its name and creation time.
func streamIdentity(name string, created time.Time) string {
	return "stream " + name + " created " + created.UTC().Format(time.RFC3339Nano)
}
