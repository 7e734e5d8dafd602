package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

// begin makes sure a connection and an open transaction exist; a new
// transaction first replays the steps of the one that was lost.
func (s *sink) begin(ctx context.Context) error {
	if err := s.dial(ctx); err != nil {
		return err
	}
	if s.tx != nil {
		return nil
	}
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return err
	}
	s.tx = tx
	s.txStart = time.Now()
	if len(s.done) > 0 {
		s.log.Info("postgres: replaying transaction", "steps", len(s.done), "rows", s.txRows)
	}
	for _, st := range s.done {
		if err := s.exec(ctx, tx, st); err != nil {
			s.abort(ctx)
			if recordError(err) {
				// Not this Write's rows: fail rather than blame them.
				return fmt.Errorf("replay: %v", err)
			}
			return err
		}
	}
	return nil
}

// dial connects unless connected.
func (s *sink) dial(ctx context.Context) error {
	if s.conn != nil && !s.conn.IsClosed() {
		return nil
	}
	s.conn, s.tx = nil, nil
	conn, err := connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").
		Scan(&s.backendStart); err != nil {
		conn.Close(ctx)
		return err
	}
	s.conn = conn
	return nil
}

// reset drops the connection and the transaction it held.
func (s *sink) reset() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.conn.Close(ctx)
		cancel()
	}
	s.conn, s.tx = nil, nil
}

// abort rolls the open transaction back, keeping the connection.
func (s *sink) abort(ctx context.Context) {
	if s.tx != nil {
		if err := s.tx.Rollback(ctx); err != nil {
			s.reset()
			return
		}
	}
	s.tx = nil
}

// inTx runs fn in the open transaction, reconnecting and replaying on
// connection loss until retry_timeout.
func (s *sink) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	b := s.backoff()
	for {
		err := s.begin(ctx)
		if err == nil {
			err = fn(s.tx)
		}
		if err == nil {
			return nil
		}
		if !transient(err) || ctx.Err() != nil {
			return err
		}
		s.reset()
		if werr := b.Wait(ctx, err); werr != nil {
			return werr
		}
	}
}

// apply runs one step of a Write. Rows the server rejects for their
// content are found by bisection under savepoints and returned.
func (s *sink) apply(ctx context.Context, st sqlcommon.Step) (stdlib.RecordErrors, error) {
	err := s.inTx(ctx, func(tx pgx.Tx) error { return s.exec(ctx, tx, st) })
	if err == nil {
		s.done = append(s.done, st)
		s.txRows += len(st.Rows)
		return nil, nil
	}
	if !recordError(err) {
		return nil, err
	}
	// The transaction is aborted: start it again and find the bad rows.
	s.abort(ctx)
	var rejected stdlib.RecordErrors
	good := sqlcommon.Step{Op: st.Op, Cols: st.Cols}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		rejected, good.Rows, good.Idx = nil, nil, nil
		return s.bisect(ctx, tx, st, &good, &rejected)
	})
	if err != nil {
		return nil, err
	}
	if len(good.Rows) > 0 {
		s.done = append(s.done, good)
		s.txRows += len(good.Rows)
	}
	return rejected, nil
}

func (s *sink) bisect(ctx context.Context, tx pgx.Tx, st sqlcommon.Step, good *sqlcommon.Step, rejected *stdlib.RecordErrors) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	err = s.exec(ctx, sp, st)
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return err
		}
		good.Rows = append(good.Rows, st.Rows...)
		good.Idx = append(good.Idx, st.Idx...)
		return nil
	}
	if !recordError(err) {
		return err
	}
	if err := sp.Rollback(ctx); err != nil {
		return err
	}
	if len(st.Rows) == 1 {
		*rejected = append(*rejected, stdlib.RecordError{Index: st.Idx[0], Err: rowError(err)})
		return nil
	}
	mid := len(st.Rows) / 2
	first := sqlcommon.Step{Op: st.Op, Cols: st.Cols, Rows: st.Rows[:mid], Idx: st.Idx[:mid]}
	second := sqlcommon.Step{Op: st.Op, Cols: st.Cols, Rows: st.Rows[mid:], Idx: st.Idx[mid:]}
	if err := s.bisect(ctx, tx, first, good, rejected); err != nil {
		return err
	}
	return s.bisect(ctx, tx, second, good, rejected)
}

// rowError is the server's verdict on one row, without the statement.
func rowError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := "rejected by the database: " + pe.Message
		if pe.ColumnName != "" && !strings.Contains(pe.Message, pe.ColumnName) {
			msg += fmt.Sprintf(" (column %q)", pe.ColumnName)
		}
		return errors.New(msg)
	}
	return err
}

// exec runs one step in tx (a transaction or a savepoint). Inserts go by
// COPY; upserts and deletes by one statement over unnest() of one array
// per column: a single round trip, measured faster than COPY into a
// temporary table followed by INSERT ... SELECT ... ON CONFLICT.
func (s *sink) exec(ctx context.Context, tx pgx.Tx, st sqlcommon.Step) error {
	switch st.Op {
	case sqlcommon.OpDDL:
		_, err := tx.Exec(ctx, st.DDL)
		return err
	case sqlcommon.OpInsert:
		_, err := tx.CopyFrom(ctx, s.table.ident(), st.Cols, pgx.CopyFromRows(st.Rows))
		return err
	case sqlcommon.OpUpsert:
		_, err := tx.Exec(ctx, s.upsertSQL(st.Cols), columnArrays(st)...)
		return err
	case sqlcommon.OpDelete:
		_, err := tx.Exec(ctx, s.deleteSQL(), columnArrays(st)...)
		return err
	}
	return fmt.Errorf("unknown step %d", st.Op)
}

// columnArrays turns a step's rows into one array argument per column.
func columnArrays(st sqlcommon.Step) []any {
	args := make([]any, len(st.Cols))
	for j := range st.Cols {
		col := make([]any, len(st.Rows))
		for i, row := range st.Rows {
			col[i] = row[j]
		}
		args[j] = col
	}
	return args
}

// unnest returns "unnest($1::type[], ...)" over cols.
func (s *sink) unnest(cols []string) string {
	params := make([]string, len(cols))
	for i, c := range cols {
		// Without modifiers: an explicit cast to varchar(n) would truncate.
		params[i] = fmt.Sprintf("$%d::%s[]", i+1, s.tbl.Cols[c].BaseType)
	}
	return "unnest(" + strings.Join(params, ", ") + ")"
}

func (s *sink) upsertSQL(cols []string) string {
	qc := make([]string, len(cols))
	var set []string
	for i, c := range cols {
		qc[i] = quote(c)
		if !slices.Contains(s.tbl.Keys, c) {
			set = append(set, qc[i]+" = EXCLUDED."+qc[i])
		}
	}
	qk := make([]string, len(s.tbl.Keys))
	for i, k := range s.tbl.Keys {
		qk[i] = quote(k)
	}
	sql := "INSERT INTO " + s.table.sql() + " (" + strings.Join(qc, ", ") + ") SELECT * FROM " + s.unnest(cols) +
		" ON CONFLICT (" + strings.Join(qk, ", ") + ") DO "
	if len(set) == 0 {
		return sql + "NOTHING"
	}
	return sql + "UPDATE SET " + strings.Join(set, ", ")
}

func (s *sink) deleteSQL() string {
	conds := make([]string, len(s.tbl.Keys))
	qk := make([]string, len(s.tbl.Keys))
	for i, k := range s.tbl.Keys {
		qk[i] = quote(k)
		conds[i] = "t." + qk[i] + " = d." + qk[i]
	}
	return "DELETE FROM " + s.table.sql() + " t USING " + s.unnest(s.tbl.Keys) + " AS d(" + strings.Join(qk, ", ") +
		") WHERE " + strings.Join(conds, " AND ")
}

// evolveFor adds a nullable column for every field of the batch that the
// table lacks.
func (s *sink) evolveFor(ctx context.Context, batch []stdlib.Record) error {
	adds := addColumns(s.tbl.Evolve(batch, &pgTypes))
	if len(adds) == 0 {
		return nil
	}
	if len(s.buf.Items) > 0 {
		if _, err := s.flush(ctx); err != nil {
			return err
		}
	}
	st := sqlcommon.Step{Op: sqlcommon.OpDDL, DDL: "ALTER TABLE " + s.table.sql() + " " + strings.Join(adds, ", ")}
	var cols []column
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := s.exec(ctx, tx, st); err != nil {
			return err
		}
		var err error
		cols, err = readColumns(ctx, tx, s.table)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres sink %q: evolve table %q: %w", s.sinkID, s.table.String(), err)
	}
	s.done = append(s.done, st)
	s.setColumns(cols)
	s.log.Info("postgres: added columns", "table", s.table.String(), "count", len(adds))
	return nil
}

// Checkpoint commits the open transaction; exactly_once stores the
// checkpoint's positions in it first.
func (s *sink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.checkpoint(ctx, cp); err != nil {
		s.failed = err
		return err
	}
	return nil
}

func (s *sink) checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if len(s.buf.Items) > 0 {
		if _, err := s.flush(ctx); err != nil {
			return fmt.Errorf("checkpoint %d: %w", cp.ID, err)
		}
	}
	if s.tx == nil && len(s.done) == 0 && (!s.exactly || len(cp.Positions) == 0) {
		return nil
	}
	if err := s.commit(ctx, &cp); err != nil {
		return fmt.Errorf("postgres sink %q: checkpoint %d: %w", s.sinkID, cp.ID, err)
	}
	return nil
}

// commit commits the open transaction (replaying it on a new connection if
// the old one was lost). With exactly_once and cp, the positions are stored
// in the same transaction, and a COMMIT whose outcome is unknown is decided
// by reading back the commit token.
func (s *sink) commit(ctx context.Context, cp *stdlib.Checkpoint) error {
	b := s.backoff()
	for {
		err := s.begin(ctx)
		token := rand.Int64()
		if err == nil && s.exactly && cp != nil {
			err = s.storePositions(ctx, s.tx, cp.Positions, token)
		}
		if err == nil {
			pid, start := s.conn.PgConn().PID(), s.backendStart
			err = s.tx.Commit(ctx)
			if err == nil {
				s.committed()
				return nil
			}
			s.reset()
			if transient(err) && s.exactly && cp != nil {
				ok, cerr := s.decide(ctx, token, pid, start)
				if cerr != nil {
					return fmt.Errorf("commit outcome unknown: %w", cerr)
				}
				if ok {
					s.committed()
					return nil
				}
			}
		}
		if !transient(err) || ctx.Err() != nil {
			if s.tx != nil {
				s.abort(ctx)
			}
			return err
		}
		s.reset()
		if werr := b.Wait(ctx, err); werr != nil {
			return werr
		}
	}
}

func (s *sink) committed() {
	s.tx = nil
	s.done = nil
	s.txRows = 0
	s.stale = false
}

// decide tells whether the transaction that carried token committed. The
// backend that ran it (pid, started at start) is terminated first if it
// still runs, so that its fate is sealed before the token is read.
func (s *sink) decide(ctx context.Context, token int64, pid uint32, start time.Time) (bool, error) {
	b := s.backoff()
	for {
		ok, err := s.readToken(ctx, token, pid, start)
		if err == nil {
			return ok, nil
		}
		if !transient(err) {
			return false, err
		}
		s.reset()
		if werr := b.Wait(ctx, err); werr != nil {
			return false, werr
		}
	}
}

func (s *sink) readToken(ctx context.Context, token int64, pid uint32, start time.Time) (bool, error) {
	if err := s.dial(ctx); err != nil {
		return false, err
	}
	for range 100 {
		var alive bool
		if err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2)`,
			int32(pid), start).Scan(&alive); err != nil {
			return false, err
		}
		if !alive {
			break
		}
		if _, err := s.conn.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
			return false, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got int64
	err := s.conn.QueryRow(ctx, `SELECT "offset" FROM `+s.offsets.sql()+
		` WHERE pipeline = $1 AND sink = $2 AND source = '' AND partition = ''`, s.pipeline, s.sinkID).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return got == token, nil
}

// Close rolls back whatever is not committed and disconnects.
func (s *sink) Close(ctx context.Context) error {
	if s.tx != nil {
		_ = s.tx.Rollback(ctx)
	}
	s.tx, s.done, s.txRows, s.buf = nil, nil, 0, sqlcommon.Buffer{}
	if s.conn != nil {
		err := s.conn.Close(ctx)
		s.conn = nil
		if err != nil {
			return fmt.Errorf("postgres sink %q: close: %w", s.sinkID, err)
		}
	}
	return nil
}
