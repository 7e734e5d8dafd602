package nats

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// CoreSourceSpec describes the nats_core source: a core NATS
// subscription, without JetStream.
var CoreSourceSpec = &stdlib.Spec{
	Kind: stdlib.SourceKind,
	Name: "nats_core",
	Summary: "subscribe to core NATS subjects (no JetStream): at most once — messages published while the pipeline " +
		"is down or slow are lost, and a run never resumes",
	Schema: true,
	Meta:   []stdlib.MetaField{stdlib.MetaSubject, stdlib.MetaOffset, stdlib.MetaTimestamp, stdlib.MetaHeaders},
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "subject", Type: stdlib.String, Required: true, Doc: "subject to subscribe to (wildcards allowed)"},
		stdlib.Param{Name: "queue", Type: stdlib.String, Doc: "queue group: the processes of a group share the messages"},
		formatParam,
		stdlib.Param{Name: "buffer", Type: stdlib.Int, Default: int64(65536), Doc: "messages the subscription holds before it drops (a slow consumer)"},
		stdlib.Param{Name: "max_wait", Type: stdlib.Duration, Default: 250 * time.Millisecond, Doc: "longest a read waits for messages"},
	),
	Output: stdlib.RawOutput,
	Check: func(attrs map[string]any) []stdlib.AttrError {
		errs := checkConn(attrs)
		if v, ok := attrs["subject"].(string); ok && !validSubject(v, true) {
			errs = append(errs, stdlib.AttrError{Attr: "subject", Message: fmt.Sprintf("subject %q is not a valid subject", v)})
		}
		if v, ok := attrs["queue"].(string); ok && !validName(v) {
			errs = append(errs, stdlib.AttrError{Attr: "queue", Message: "queue must be a name without '.', '*', '>' or blanks"})
		}
		return append(errs, stdlib.Positive(attrs, "buffer", "max_wait")...)
	},
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newCoreSource(cfg) },
}

type coreSource struct {
	cfg     stdlib.Config
	log     *slog.Logger
	conn    *conn
	subject string
	queue   string
	maxWait time.Duration
	val     codec.Codec

	nc  *nats.Conn
	ch  chan *nats.Msg
	sub *nats.Subscription
	n   int64 // messages received
}

func newCoreSource(cfg stdlib.Config) (*coreSource, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return nil, err
	}
	s := &coreSource{cfg: cfg, log: cfg.Log(), conn: cn, subject: cfg.String("subject"), queue: cfg.String("queue"),
		maxWait: cfg.Duration("max_wait")}
	if s.val, err = codec.New(cfg.String("format"), cfg.Schema, codec.Options{}); err != nil {
		return nil, err
	}
	s.ch = make(chan *nats.Msg, max(cfg.Int("buffer"), 1))
	return s, nil
}

func (s *coreSource) what() string { return fmt.Sprintf("nats_core source %q", s.cfg.Stage) }

// Open subscribes. A core subscription has no position to resume from:
// the source never calls Resume, so no record of it is dropped as a
// replay either. With more than one task, only a queue group shares the
// messages; without one, task 0 alone subscribes.
func (s *coreSource) Open(ctx context.Context, _ stdlib.Resumer) error {
	if s.cfg.Task != 0 && s.queue == "" {
		return nil
	}
	var err error
	if s.nc, err = s.conn.connect(ctx, s.log, s.what()); err != nil {
		return err
	}
	if s.queue != "" {
		s.sub, err = s.nc.ChanQueueSubscribe(s.subject, s.queue, s.ch)
	} else {
		s.sub, err = s.nc.ChanSubscribe(s.subject, s.ch)
	}
	if err == nil {
		err = s.nc.FlushTimeout(10 * time.Second) // the server has the subscription
	}
	if err != nil {
		return fmt.Errorf("subscribe %q: %w", s.subject, err)
	}
	return nil
}

func (s *coreSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	if s.nc == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	t := time.NewTimer(s.maxWait)
	defer t.Stop()
	var out []stdlib.Record
	select {
	case m := <-s.ch:
		out = append(out, s.record(m))
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < 4096 {
		select {
		case m := <-s.ch:
			out = append(out, s.record(m))
		default:
			return out, nil
		}
	}
	return out, nil
}

func (s *coreSource) record(m *nats.Msg) stdlib.Record {
	s.n++
	var derr error
	v, err := s.val.Decode(m.Data)
	if err != nil {
		derr = fmt.Errorf("decode message %d of %s: %w", s.n, m.Subject, err)
	}
	return stdlib.Record{
		Value:     v,
		Headers:   headersOf(m.Header),
		Time:      time.Now(),
		Subject:   m.Subject,
		Partition: -1,
		Pos:       stdlib.Position{Source: s.cfg.Stage, Partition: s.subject, Offset: s.n},
		Raw:       m.Data,
		Err:       derr,
	}
}

// Commit has nothing to acknowledge: core NATS keeps no positions.
func (s *coreSource) Commit(context.Context, []stdlib.Position) error { return nil }

func (s *coreSource) Close(context.Context) error {
	if s.nc != nil {
		s.nc.Close()
	}
	return nil
}
