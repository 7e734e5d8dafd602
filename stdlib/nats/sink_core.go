package nats

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// CoreSinkSpec describes the nats_core sink: core NATS publishes, without
// JetStream.
var CoreSinkSpec = &stdlib.Spec{
	Kind: stdlib.SinkKind,
	Name: "nats_core",
	Summary: "publish records on core NATS subjects (no JetStream): at most once — the server keeps nothing, " +
		"and subscribers that are away or slow miss messages",
	Delivery: []stdlib.Delivery{stdlib.AtMostOnce},
	Schema:   true,
	Releases: true,
	Params: append(slices.Concat(connParams, msgParams),
		stdlib.Param{Name: "timeout", Type: stdlib.Duration, Default: 10 * time.Second, Doc: "longest a checkpoint waits for the server to have every message (a flush)"},
	),
	Check: func(attrs map[string]any) []stdlib.AttrError {
		return append(checkMsg(attrs), stdlib.Positive(attrs, "timeout")...)
	},
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) { return newCoreSink(cfg) },
}

type coreSink struct {
	cfg     stdlib.Config
	log     *slog.Logger
	conn    *conn
	enc     encoder
	timeout time.Duration
	nc      *nats.Conn
	bo      *retry.Backoff
}

func newCoreSink(cfg stdlib.Config) (*coreSink, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	s := &coreSink{cfg: cfg, log: cfg.Log(), conn: cn, timeout: cfg.Duration("timeout")}
	if s.enc, err = newEncoder(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *coreSink) what() string { return fmt.Sprintf("nats_core sink %q", s.cfg.Stage) }

func (s *coreSink) Open(ctx context.Context) ([]stdlib.Position, error) {
	var err error
	if s.nc, err = s.conn.connect(ctx, s.log, s.what()); err != nil {
		return nil, err
	}
	s.bo = s.conn.backoff(s.log, s.what())
	return nil, nil
}

// Write publishes the batch. A publish refused while the connection is
// down (nothing was sent) is tried again with backoff; what was handed to
// the connection is never sent twice.
func (s *coreSink) Write(ctx context.Context, batch []stdlib.Record) error {
	var rerrs stdlib.RecordErrors
	for i := range batch {
		m, err := s.enc.message(&batch[i])
		if err != nil {
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		err = retry.Do(ctx, s.bo, transient, func() error { return s.nc.PublishMsg(m) })
		switch {
		case err == nil:
		case err == nats.ErrMaxPayload:
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
		default:
			return fmt.Errorf("publish: %w", err)
		}
	}
	if len(rerrs) > 0 {
		return rerrs
	}
	return nil
}

// Checkpoint waits until the server has received every message published
// so far. Messages lost with a connection are not sent again.
func (s *coreSink) Checkpoint(ctx context.Context, _ stdlib.Checkpoint) error {
	err := retry.Do(ctx, s.bo, transient, func() error { return s.nc.FlushTimeout(s.timeout) })
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

func (s *coreSink) Close(context.Context) error {
	if s.nc != nil {
		s.nc.Close()
	}
	return nil
}
