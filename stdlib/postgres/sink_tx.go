package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

// Begin makes sure a connection and an open transaction exist; a new
// transaction first replays the steps of the one that was lost.
func (s *sink) Begin(ctx context.Context) error {
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
	return s.Replay(ctx, recordError, func(st sqlcommon.Step) error { return s.exec(ctx, tx, st) })
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

// Reset drops the connection and the transaction it held.
func (s *sink) Reset() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.conn.Close(ctx)
		cancel()
	}
	s.conn, s.tx = nil, nil
}

// Abort rolls the open transaction back, keeping the connection.
func (s *sink) Abort(ctx context.Context) {
	if s.tx != nil {
		if err := s.tx.Rollback(ctx); err != nil {
			s.Reset()
			return
		}
	}
	s.tx = nil
}

// inTx runs fn in the open transaction, reconnecting and replaying on
// connection loss until retry_timeout.
func (s *sink) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.Retry(ctx, func() error {
		if err := s.Begin(ctx); err != nil {
			return err
		}
		return fn(s.tx)
	})
}

// Apply runs one step of a Write. Rows the server rejects for their
// content are found by bisection under savepoints and returned.
func (s *sink) Apply(ctx context.Context, st sqlcommon.Step) (stdlib.RecordErrors, error) {
	err := s.inTx(ctx, func(tx pgx.Tx) error { return s.exec(ctx, tx, st) })
	if err == nil {
		s.Done = append(s.Done, st)
		s.TxRows += len(st.Rows)
		return nil, nil
	}
	if !recordError(err) {
		return nil, err
	}
	// The transaction is aborted: start it again and find the bad rows.
	s.Abort(ctx)
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
		s.Done = append(s.Done, good)
		s.TxRows += len(good.Rows)
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
		params[i] = fmt.Sprintf("$%d::%s[]", i+1, s.Tbl.Cols[c].BaseType)
	}
	return "unnest(" + strings.Join(params, ", ") + ")"
}

func (s *sink) upsertSQL(cols []string) string {
	qc := make([]string, len(cols))
	var set []string
	for i, c := range cols {
		qc[i] = quote(c)
		if !slices.Contains(s.Tbl.Keys, c) {
			set = append(set, qc[i]+" = EXCLUDED."+qc[i])
		}
	}
	qk := make([]string, len(s.Tbl.Keys))
	for i, k := range s.Tbl.Keys {
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
	conds := make([]string, len(s.Tbl.Keys))
	qk := make([]string, len(s.Tbl.Keys))
	for i, k := range s.Tbl.Keys {
		qk[i] = quote(k)
		conds[i] = "t." + qk[i] + " = d." + qk[i]
	}
	return "DELETE FROM " + s.table.sql() + " t USING " + s.unnest(s.Tbl.Keys) + " AS d(" + strings.Join(qk, ", ") +
		") WHERE " + strings.Join(conds, " AND ")
}

// EvolveFor adds a nullable column for every field of the batch that the
// table lacks.
func (s *sink) EvolveFor(ctx context.Context, batch []stdlib.Record) error {
	adds := addColumns(s.Tbl.Evolve(batch, &pgTypes))
	if len(adds) == 0 {
		return nil
	}
	if len(s.Buf.Items) > 0 {
		if _, err := s.Flush(ctx); err != nil {
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
		return fmt.Errorf("evolve table %q: %w", s.table.String(), err)
	}
	s.Done = append(s.Done, st)
	s.Tbl.SetColumns(sqlcommon.Ptrs(cols))
	s.Log.Info("postgres: added columns", "table", s.table.String(), "count", len(adds))
	return nil
}

// readToken tells whether the transaction that carried token committed.
// The backend that ran it (pid, started at start) is terminated first if
// it still runs, so that its fate is sealed before the token is read.
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
		` WHERE pipeline = $1 AND sink = $2 AND source = '' AND partition = ''`, s.Pipeline, s.ID).Scan(&got)
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
	s.tx, s.Done, s.TxRows, s.Buf = nil, nil, 0, sqlcommon.Buffer{}
	return disconnect(ctx, &s.conn)
}

// InTx reports whether a transaction is open.
func (s *sink) InTx() bool { return s.tx != nil }

// StorePositions stores ps and the commit token in the open transaction.
func (s *sink) StorePositions(ctx context.Context, ps []stdlib.Position, token int64) error {
	return s.storePositions(ctx, s.tx, ps, token)
}

// CommitTx commits; a transaction whose COMMIT failed is decided by the
// backend (pid and start) that ran it.
func (s *sink) CommitTx(ctx context.Context) (func(context.Context, int64) (bool, error), error) {
	pid, start := s.conn.PgConn().PID(), s.backendStart
	err := s.tx.Commit(ctx)
	return func(ctx context.Context, token int64) (bool, error) { return s.readToken(ctx, token, pid, start) }, err
}

// TxCommitted forgets the transaction that committed.
func (s *sink) TxCommitted() { s.tx, s.stale = nil, false }

// Transient reports an error that a new connection may cure.
func (s *sink) Transient(err error) bool { return transient(err) }

// Redact returns err unchanged.
func (s *sink) Redact(err error) error { return err }

// decide tells whether the transaction that carried token, run by the
// backend pid started at start, committed.
func (s *sink) decide(ctx context.Context, token int64, pid uint32, start time.Time) (bool, error) {
	return s.Decide(ctx, token, func(ctx context.Context, token int64) (bool, error) {
		return s.readToken(ctx, token, pid, start)
	})
}
