package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// TestZeroRetryTimeoutKept checks that retry_timeout = 0s means what it
// says, no reconnecting: a server that refuses connections fails Open at
// once instead of after the default 5m.
func TestZeroRetryTimeoutKept(t *testing.T) {
	const refused = "postgres://postgres@127.0.0.1:1/test?sslmode=disable"
	open := map[string]func(context.Context, stdlib.Config) error{
		"source": func(ctx context.Context, cfg stdlib.Config) error {
			s, err := newSource(cfg)
			if err == nil {
				err = s.Open(ctx, nil)
			}
			return err
		},
		"sink": func(ctx context.Context, cfg stdlib.Config) error {
			s, err := newSink(cfg)
			if err == nil {
				_, err = s.Open(ctx)
			}
			return err
		},
	}
	for _, c := range []struct {
		name string
		spec *stdlib.Spec
	}{{"source", SourceSpec}, {"sink", SinkSpec}} {
		t.Run(c.name, func(t *testing.T) {
			attrs, err := c.spec.Values(map[string]any{"dsn": refused, "table": "t", "incrementing_column": "id",
				"retry_timeout": time.Duration(0)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err = open[c.name](ctx, stdlib.Config{Stage: "s", Attrs: attrs, Tasks: 1, Delivery: stdlib.AtLeastOnce})
			if err == nil || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || time.Since(start) > 3*time.Second {
				t.Fatalf("Open = %v after %v, want a connection error at once", err, time.Since(start))
			}
		})
	}
}
