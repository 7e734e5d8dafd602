package sqlcommon

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// Source is the state every SQL source keeps: its settings (the
// attributes of [SourceParams]) and where it stands. A source embeds it
// and adds its connection and columns.
type Source struct {
	System       string // names the source in logs: "mysql", "postgres"
	Log          *slog.Logger
	HasTable     bool   // table is set; else SQL is read
	SQL          string // the query attribute
	Mode         ReadMode
	Inc, TS      string
	Delay        time.Duration
	Batch        int
	RetryTimeout time.Duration
	Stage        string
	Partition    string // the table attribute, or "query"
	Task         int
	Schema       *types.Type

	Last    int64 // offset of the last record emitted
	HasLast bool
	Ordinal int64 // bulk: rows of the current read so far

	Poller // poll, idle, done
}

// NewSource returns the state of a source of system configured by cfg,
// whose attributes check reports on; parseTable takes the table
// attribute, when set, in the dialect's form.
func NewSource(system string, cfg stdlib.Config, check func(map[string]any) []stdlib.AttrError, parseTable func(string) error) (Source, error) {
	s := Source{
		System:       system,
		Log:          cfg.Log(),
		SQL:          cfg.String("query"),
		Inc:          cfg.String("incrementing_column"),
		TS:           cfg.String("timestamp_column"),
		Delay:        cfg.Duration("delay"),
		Batch:        int(cfg.Int("batch")),
		RetryTimeout: cfg.Duration(retry.Param.Name),
		Stage:        cfg.Stage,
		Partition:    "query",
		Task:         cfg.Task,
		Schema:       cfg.Schema,
		Poller:       Poller{Poll: cfg.Duration("poll")},
	}
	if errs := check(cfg.Attrs); len(errs) > 0 {
		return s, errors.New(errs[0].Message)
	}
	if t := cfg.String("table"); t != "" {
		if err := parseTable(t); err != nil {
			return s, err
		}
		s.HasTable, s.Partition = true, t
	}
	var err error
	s.Mode, err = ParseReadMode(cfg.String("mode"))
	return s, err
}

// Backoff paces the retries of one operation until retry_timeout.
func (s *Source) Backoff() *retry.Backoff {
	return retry.New(s.RetryTimeout, s.Log, s.System+" source")
}

// From is what the source's queries select from: table (the table
// attribute as the dialect writes it), or the query as a derived table.
func (s *Source) From(table string) string {
	if s.HasTable {
		return table
	}
	return "(" + s.SQL + ") AS pipe_q"
}

// Resumed positions the source after the offset resume holds for its
// partition, if that offset points into id.
func (s *Source) Resumed(resume stdlib.Resumer, id string) {
	if resume == nil {
		return
	}
	if off, ok := resume.Resume(s.Partition, id); ok {
		s.Last, s.HasLast = off, true
	}
}

// At is where the source stands, for [Collect] and [Poller.Bulk].
func (s *Source) At() Offset { return Offset{Last: &s.Last, HasLast: &s.HasLast} }

// Fetch reads the next batch of an incremental mode from the queries q
// builds: collect runs one (ts: the offset is the timestamp column). In
// the timestamp modes a full batch ends after its last whole group of one
// timestamp, and a batch that is one group is read whole.
func (s *Source) Fetch(ctx context.Context, q *Query, collect func(ctx context.Context, query string, args []any, ts bool) ([]stdlib.Record, error)) ([]stdlib.Record, error) {
	query, args := q.Next(s.Last, s.HasLast)
	ts := s.Mode.Timestamped()
	recs, err := collect(ctx, query, args, ts)
	if err != nil || !ts {
		return recs, err
	}
	keep, group, whole := WholeGroups(recs, s.Batch)
	if !whole {
		if len(keep) > 0 {
			s.Last = keep[len(keep)-1].Pos.Offset
		}
		return keep, nil
	}
	// The whole batch is one group: read all of it.
	query, args = q.Group(group)
	return collect(ctx, query, args, true)
}

// Query returns the builder of the source's incremental statements in
// dialect d, selecting from from (see [Source.From]).
func (s *Source) Query(d Dialect, from string) *Query {
	return &Query{D: d, From: from, Mode: s.Mode, Inc: s.Inc, TS: s.TS, Batch: s.Batch, Delay: s.Delay}
}
