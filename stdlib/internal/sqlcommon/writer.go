package sqlcommon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// Sink is the state and the logic that the SQL sinks share: rows of Writes
// are buffered and sent in steps, the transaction that holds them is
// committed at a checkpoint (with the positions under exactly_once) or,
// without exactly_once, when it holds batch rows or is older than flush.
// What differs between servers is behind [Conn].
type Sink[C Column] struct {
	System       string // names the sink in logs: "mysql", "postgres"
	Log          *slog.Logger
	Pipeline     string
	Stage        string
	Tasks        int
	Create       bool          // create_table
	RetryTimeout time.Duration // retry_timeout
	ID           string        // the task's name in the offsets table
	Tbl          Table[C]      // columns, mode, keys, record type
	Batch        int
	FlushEvery   time.Duration
	Evolve       bool
	Exactly      bool
	Coalesce     bool // rows of several Writes may share a statement
	MaxValues    int  // values one statement may carry at most; 0: no limit

	Failed  error  // a failure that left the transaction in doubt
	Writes  uint64 // Write calls so far
	Buf     Buffer // rows not yet sent
	TxStart time.Time
	TxRows  int
	Done    []Step // steps of the open transaction

	Conn Conn
	Cat  Catalog[C]
}

// Server is a SQL sink's own part, over its driver's types: its
// connection and transaction, and its catalog.
type Server[C Column] interface {
	Conn
	Catalog[C]
}

// NewSink returns the state of a sink of system configured by cfg (the
// attributes of [SinkParams]); srv is the sink's side.
func NewSink[C Column](system string, cfg stdlib.Config, toColumn func(C, any) (any, error), srv Server[C]) Sink[C] {
	s := Sink[C]{
		System:       system,
		Log:          cfg.Log(),
		Pipeline:     cfg.Pipeline,
		Stage:        cfg.Stage,
		Tasks:        cfg.Tasks,
		Create:       cfg.Bool("create_table"),
		RetryTimeout: cfg.Duration(retry.Param.Name),
		ID:           TaskSinkID(cfg.Stage, cfg.Task, cfg.Tasks),
		Batch:        int(cfg.Int("batch")),
		FlushEvery:   cfg.Duration("flush"),
		Evolve:       cfg.String("evolve") == "add_columns",
		Exactly:      cfg.Delivery == stdlib.ExactlyOnce,
		Conn:         srv,
		Cat:          srv,
	}
	s.Tbl.Keys = cfg.Strings("key")
	s.Tbl.ToColumn = toColumn
	return s
}

// ParseTables parses the table and offsets_table attributes of cfg.
func ParseTables[T any](cfg stdlib.Config, parse func(string) (T, error)) (table, offsets T, err error) {
	if table, err = parse(cfg.String("table")); err == nil {
		offsets, err = parse(cfg.String("offsets_table"))
	}
	return table, offsets, err
}

// Configure reads the mode and the record type of cfg.
func (s *Sink[C]) Configure(cfg stdlib.Config) error {
	var err error
	if s.Tbl.Mode, err = ParseMode(cfg.String("mode")); err != nil {
		return err
	}
	s.Tbl.RType, err = RecordType(cfg)
	return err
}

// ResolveTables qualifies *table and *offsets by resolve, with the
// connection's database or schema, and names the table in s.Tbl: the body
// of a [Catalog.Resolve].
func ResolveTables[C Column, T fmt.Stringer](s *Sink[C], table, offsets *T, resolve func(T) (T, error)) error {
	var err error
	if *table, err = resolve(*table); err != nil {
		return err
	}
	*offsets, err = resolve(*offsets)
	s.Tbl.Name = (*table).String()
	return err
}

// Open connects, prepares the table ([Sink.Prepare]) and returns the
// positions held, retrying transient failures until retry_timeout.
func (s *Sink[C]) Open(ctx context.Context) ([]stdlib.Position, error) {
	s.Failed, s.Buf, s.Done, s.TxRows = nil, Buffer{}, nil, 0
	var held []stdlib.Position
	err := s.Retry(ctx, func() error {
		err := s.Conn.Connect(ctx)
		if err == nil {
			held, err = s.Prepare(ctx, s.Cat)
		}
		if err != nil {
			s.Conn.Reset()
			s.Tbl.Cols = nil
		}
		return err
	})
	if err != nil {
		return nil, s.Conn.Redact(err)
	}
	return held, nil
}

// Replay starts a transaction: it runs again by exec the steps of the one
// that was lost. A step the server rejects for a row's content fails the
// replay (those rows are not the present Write's to blame).
func (s *Sink[C]) Replay(ctx context.Context, recordError func(error) bool, exec func(Step) error) error {
	s.TxStart = time.Now()
	if len(s.Done) > 0 {
		s.Log.Info(s.System+": replaying transaction", "steps", len(s.Done), "rows", s.TxRows)
	}
	for _, st := range s.Done {
		if err := exec(st); err != nil {
			s.Conn.Abort(ctx)
			if recordError(err) {
				return fmt.Errorf("replay: %v", err)
			}
			return err
		}
	}
	return nil
}

// Retry runs attempt until it succeeds, fails with an error a new
// connection does not cure, or retry_timeout ends: after a transient
// failure the connection is dropped and the next attempt waits its turn.
func (s *Sink[C]) Retry(ctx context.Context, attempt func() error) error {
	b := s.Backoff()
	for {
		err := attempt()
		if err == nil {
			return nil
		}
		if !s.Conn.Transient(err) || ctx.Err() != nil {
			return err
		}
		s.Conn.Reset()
		if werr := b.Wait(ctx, s.Conn.Redact(err)); werr != nil {
			return werr
		}
	}
}

// Conn is what a SQL sink does with its server: the transaction, the
// statements and the reading back of a commit token.
type Conn interface {
	// Connect connects unless connected, forgetting any transaction: the
	// first step of Open.
	Connect(ctx context.Context) error
	// EvolveFor adds a column for every field of batch the table lacks.
	EvolveFor(ctx context.Context, batch []stdlib.Record) error
	// Apply runs a step in the open transaction.
	Apply(ctx context.Context, st Step) (stdlib.RecordErrors, error)
	// InTx reports whether a transaction is open.
	InTx() bool
	// Begin makes sure a connection and an open transaction exist.
	Begin(ctx context.Context) error
	// StorePositions stores ps and the commit token in the open transaction.
	StorePositions(ctx context.Context, ps []stdlib.Position, token int64) error
	// CommitTx commits the open transaction. On failure, readToken tells
	// whether the transaction that carried a token committed after all.
	CommitTx(ctx context.Context) (readToken func(ctx context.Context, token int64) (bool, error), err error)
	// TxCommitted forgets the transaction that committed.
	TxCommitted()
	// Reset drops the connection and the transaction it held.
	Reset()
	// Abort rolls the open transaction back, keeping the connection.
	Abort(ctx context.Context)
	// Transient reports an error that a new connection may cure.
	Transient(err error) bool
	// Redact removes secrets from err.
	Redact(err error) error
}

// Backoff paces the retries of one operation until retry_timeout.
func (s *Sink[C]) Backoff() *retry.Backoff { return retry.New(s.RetryTimeout, s.Log, s.System+" sink") }

// Write converts the batch and buffers its rows. The buffer goes to the
// server when it holds batch rows or is older than flush, or at the end of
// every Write when the table has constraints only the server can check.
//
// A failure other than rejected records leaves the open transaction in an
// unknown state (rows of this and earlier Writes may or may not be in it):
// the sink then refuses every further Write and Checkpoint, so that the
// pipeline restarts from its last checkpoint rather than commit a partial
// transaction.
func (s *Sink[C]) Write(ctx context.Context, batch []stdlib.Record) error {
	if err := s.Usable(); err != nil {
		return err
	}
	err := s.write(ctx, batch)
	if err != nil && !errors.As(err, new(stdlib.RecordErrors)) {
		err = s.Conn.Redact(err)
		s.Failed = err
	}
	return err
}

// Usable reports why the sink cannot take Write or Checkpoint calls.
func (s *Sink[C]) Usable() error {
	if s.Tbl.Cols == nil {
		return errors.New("not open")
	}
	if s.Failed != nil {
		return fmt.Errorf("%s sink %q: failed earlier, a restart is needed: %w", s.System, s.ID, s.Failed)
	}
	return nil
}

func (s *Sink[C]) write(ctx context.Context, batch []stdlib.Record) error {
	s.Writes++
	if s.Evolve {
		if err := s.Conn.EvolveFor(ctx, batch); err != nil {
			return err
		}
	}
	items, cols, rejected := s.Tbl.Convert(batch, s.Writes)
	if len(s.Buf.Items) > 0 && !slices.Equal(cols, s.Buf.Cols) {
		rerrs, err := s.Flush(ctx)
		if err != nil {
			return err
		}
		rejected = append(rejected, rerrs...)
	}
	s.Buf.Add(s.Tbl.Mode, items, cols)
	if len(s.Buf.Items) > 0 && (!s.Coalesce || len(s.Buf.Items) >= s.Batch || time.Since(s.Buf.Since) >= s.FlushEvery) {
		rerrs, err := s.Flush(ctx)
		if err != nil {
			return err
		}
		rejected = append(rejected, rerrs...)
	}
	if !s.Exactly && s.Conn.InTx() && (s.TxRows >= s.Batch || time.Since(s.TxStart) >= s.FlushEvery) {
		if err := s.commit(ctx, nil); err != nil {
			return fmt.Errorf("%s sink %q: %w", s.System, s.ID, err)
		}
	}
	if len(rejected) > 0 {
		slices.SortFunc(rejected, func(a, b stdlib.RecordError) int { return a.Index - b.Index })
		return rejected
	}
	return nil
}

// Flush sends the buffered rows. It returns the rejection of rows of the
// current Write; the rejection of a row of an earlier Write fails the call.
func (s *Sink[C]) Flush(ctx context.Context) (stdlib.RecordErrors, error) {
	per := s.Batch
	if n := max(len(s.Buf.Cols), 1); s.MaxValues > 0 && per*n > s.MaxValues {
		per = max(s.MaxValues/n, 1)
	}
	rejected, err := s.Buf.Flush(s.Tbl.Mode, s.Tbl.Keys, per, s.Writes, func(st Step) (stdlib.RecordErrors, error) {
		return s.Conn.Apply(ctx, st)
	})
	if err != nil {
		return nil, fmt.Errorf("%s sink %q: %w", s.System, s.ID, err)
	}
	return rejected, nil
}

// Checkpoint commits the open transaction; exactly_once stores the
// checkpoint's positions in it first.
func (s *Sink[C]) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if err := s.Usable(); err != nil {
		return err
	}
	if err := s.checkpoint(ctx, cp); err != nil {
		err = s.Conn.Redact(err)
		s.Failed = err
		return err
	}
	return nil
}

func (s *Sink[C]) checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if len(s.Buf.Items) > 0 {
		if _, err := s.Flush(ctx); err != nil {
			return fmt.Errorf("checkpoint %d: %w", cp.ID, err)
		}
	}
	if !s.Conn.InTx() && len(s.Done) == 0 && (!s.Exactly || len(cp.Positions) == 0) {
		return nil
	}
	if err := s.commit(ctx, &cp); err != nil {
		return fmt.Errorf("%s sink %q: checkpoint %d: %w", s.System, s.ID, cp.ID, err)
	}
	return nil
}

// commit commits the open transaction (replaying it on a new connection if
// the old one was lost). With exactly_once and cp, the positions are stored
// in the same transaction, and a COMMIT whose outcome is unknown is decided
// by reading back the commit token.
func (s *Sink[C]) commit(ctx context.Context, cp *stdlib.Checkpoint) error {
	b := s.Backoff()
	for {
		err := s.Conn.Begin(ctx)
		token := rand.Int64()
		if err == nil && s.Exactly && cp != nil {
			err = s.Conn.StorePositions(ctx, cp.Positions, token)
		}
		if err == nil {
			var readToken func(context.Context, int64) (bool, error)
			readToken, err = s.Conn.CommitTx(ctx)
			if err == nil {
				s.Committed()
				return nil
			}
			s.Conn.Reset()
			if s.Conn.Transient(err) && s.Exactly && cp != nil {
				ok, cerr := s.Decide(ctx, token, readToken)
				if cerr != nil {
					return fmt.Errorf("commit outcome unknown: %w", cerr)
				}
				if ok {
					s.Committed()
					return nil
				}
			}
		}
		if !s.Conn.Transient(err) || ctx.Err() != nil {
			if s.Conn.InTx() {
				s.Conn.Abort(ctx)
			}
			return err
		}
		s.Conn.Reset()
		if werr := b.Wait(ctx, s.Conn.Redact(err)); werr != nil {
			return werr
		}
	}
}

// Committed forgets the transaction that committed.
func (s *Sink[C]) Committed() {
	s.Done = nil
	s.TxRows = 0
	s.Conn.TxCommitted()
}

// Decide tells whether the transaction that carried token committed, by
// readToken, reconnecting until retry_timeout.
func (s *Sink[C]) Decide(ctx context.Context, token int64, readToken func(context.Context, int64) (bool, error)) (bool, error) {
	b := s.Backoff()
	for {
		ok, err := readToken(ctx, token)
		if err == nil {
			return ok, nil
		}
		if !s.Conn.Transient(err) {
			return false, err
		}
		s.Conn.Reset()
		if werr := b.Wait(ctx, s.Conn.Redact(err)); werr != nil {
			return false, werr
		}
	}
}

// PrimaryKey returns the PRIMARY KEY clause of a table created for the
// keys (names quoted by quote), "" without keys, or why a key is not a
// field of the records.
func (t *Table[C]) PrimaryKey(quote func(string) string) (string, error) {
	for _, k := range t.Keys {
		if t.RType.Field(k) == nil {
			return "", fmt.Errorf("key column %q is not a field of the records (%s)", k, t.RType)
		}
	}
	if len(t.Keys) == 0 {
		return "", nil
	}
	ks := make([]string, len(t.Keys))
	for i, k := range t.Keys {
		ks[i] = quote(k)
	}
	return "PRIMARY KEY (" + strings.Join(ks, ", ") + ")", nil
}
