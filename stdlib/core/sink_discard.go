package core

import (
	"context"

	"pipe.dev/pipe/stdlib"
)

func init() { stdlib.MustRegister(DiscardSpec) }

// DiscardSpec is the discard sink: it drops every record.
var DiscardSpec = &stdlib.Spec{
	Kind:           stdlib.SinkKind,
	Name:           "discard",
	Summary:        "drops every record (for benchmarks and dry runs); trivially exactly once",
	Delivery:       []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce, stdlib.AtMostOnce},
	Releases:       true,
	ReadsRows:      true,
	Discards:       true,
	NoRecordErrors: true,
	NewSink:        func(stdlib.Config) (stdlib.Sink, error) { return &discard{}, nil },
}

// discard counts what it drops.
type discard struct{ n int64 }

func (d *discard) Open(context.Context) ([]stdlib.Position, error) { return nil, nil }

func (d *discard) Write(_ context.Context, batch []stdlib.Record) error {
	d.n += int64(len(batch))
	return nil
}

func (d *discard) Checkpoint(context.Context, stdlib.Checkpoint) error { return nil }

func (d *discard) Close(context.Context) error { return nil }
