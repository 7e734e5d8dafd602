package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

// dial connects unless connected: one connection of the pool, kept.
func (s *sink) dial(ctx context.Context) error {
	if s.conn != nil {
		return nil
	}
	s.tx = nil
	if s.db == nil {
		db, err := s.conf.open()
		if err != nil {
			return err
		}
		s.db = db
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&s.connID); err != nil {
		dropConn(conn)
		return err
	}
	s.conn = conn
	return nil
}

// Reset drops the connection and the transaction it held.
func (s *sink) Reset() {
	if s.tx != nil {
		_ = s.tx.Rollback() // releases the connection, which a Tx holds
	}
	dropConn(s.conn)
	s.conn, s.tx = nil, nil
}

// Abort rolls the open transaction back, keeping the connection.
func (s *sink) Abort(ctx context.Context) {
	if s.tx != nil {
		if err := s.tx.Rollback(); err != nil {
			s.Reset()
			return
		}
	}
	s.tx = nil
}

// Begin makes sure a connection and an open transaction exist; a new
// transaction first replays the steps of the one that was lost.
func (s *sink) Begin(ctx context.Context) error {
	if err := s.dial(ctx); err != nil {
		return err
	}
	if s.tx != nil {
		return nil
	}
	tx, err := s.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	s.tx = tx
	return s.Replay(ctx, recordError, func(st sqlcommon.Step) error { return s.exec(ctx, st) })
}

// inTx runs fn in the open transaction, reconnecting and replaying on
// connection loss until retry_timeout.
func (s *sink) inTx(ctx context.Context, fn func() error) error {
	return s.Retry(ctx, func() error {
		if err := s.Begin(ctx); err != nil {
			return err
		}
		return fn()
	})
}

// Apply runs one step of a Write. A statement the server rejects for the
// content of a row is undone whole while the transaction goes on (InnoDB
// rolls back the statement only): its rows are sent again in halves until
// the rejected ones are found, and returned.
func (s *sink) Apply(ctx context.Context, st sqlcommon.Step) (stdlib.RecordErrors, error) {
	err := s.inTx(ctx, func() error { return s.exec(ctx, st) })
	if err == nil {
		s.Done = append(s.Done, st)
		s.TxRows += len(st.Rows)
		return nil, nil
	}
	if !recordError(err) {
		return nil, err
	}
	if len(st.Rows) == 1 {
		return stdlib.RecordErrors{{Index: st.Idx[0], Err: rowError(err)}}, nil
	}
	mid := len(st.Rows) / 2
	first, err := s.Apply(ctx, sqlcommon.Step{Op: st.Op, Cols: st.Cols, Rows: st.Rows[:mid], Idx: st.Idx[:mid]})
	if err != nil {
		return nil, err
	}
	second, err := s.Apply(ctx, sqlcommon.Step{Op: st.Op, Cols: st.Cols, Rows: st.Rows[mid:], Idx: st.Idx[mid:]})
	if err != nil {
		return nil, err
	}
	return append(first, second...), nil
}

// exec runs one step in the open transaction, as one statement: a
// multi-row INSERT, INSERT ... ON DUPLICATE KEY UPDATE, or DELETE ...
// WHERE key IN (...).
func (s *sink) exec(ctx context.Context, st sqlcommon.Step) error {
	var q string
	switch st.Op {
	case sqlcommon.OpInsert:
		q = s.insertSQL(st.Cols, len(st.Rows))
	case sqlcommon.OpUpsert:
		q = s.upsertSQL(st.Cols, len(st.Rows))
	case sqlcommon.OpDelete:
		q = s.deleteSQL(len(st.Rows))
	default:
		return fmt.Errorf("unknown step %d", st.Op)
	}
	args := make([]any, 0, len(st.Rows)*len(st.Cols))
	for _, row := range st.Rows {
		args = append(args, row...)
	}
	_, err := s.tx.ExecContext(ctx, q, args...)
	return err
}

// tuples returns n groups of width placeholders: (?, ?), (?, ?) ...
func tuples(n, width int) string {
	one := "(" + strings.Repeat("?, ", width-1) + "?)"
	var b strings.Builder
	b.Grow(n * (len(one) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
	}
	return b.String()
}

func columnList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quote(c)
	}
	return strings.Join(q, ", ")
}

func (s *sink) insertSQL(cols []string, n int) string {
	return "INSERT INTO " + s.table.sql() + " (" + columnList(cols) + ") VALUES " + tuples(n, len(cols))
}

func (s *sink) upsertSQL(cols []string, n int) string {
	var set []string
	for _, c := range cols {
		if !slices.Contains(s.Tbl.Keys, c) {
			set = append(set, quote(c)+" = VALUES("+quote(c)+")")
		}
	}
	if len(set) == 0 { // only key columns: keep the row as it is
		set = append(set, quote(cols[0])+" = "+quote(cols[0]))
	}
	return s.insertSQL(cols, n) + " ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
}

func (s *sink) deleteSQL(n int) string {
	if len(s.Tbl.Keys) == 1 {
		return "DELETE FROM " + s.table.sql() + " WHERE " + quote(s.Tbl.Keys[0]) + " IN (" +
			strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
	}
	return "DELETE FROM " + s.table.sql() + " WHERE (" + columnList(s.Tbl.Keys) + ") IN (" + tuples(n, len(s.Tbl.Keys)) + ")"
}

// readToken tells whether the transaction that carried token committed.
// The connection that ran it (id) is killed first if it still exists, so
// that its fate is sealed before the token is read.
func (s *sink) readToken(ctx context.Context, token, id int64) (bool, error) {
	if err := s.dial(ctx); err != nil {
		return false, err
	}
	for range 100 {
		var alive bool
		if err := s.conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?)`, id).
			Scan(&alive); err != nil {
			return false, err
		}
		if !alive {
			break
		}
		if _, err := s.conn.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil && !isUnknownThread(err) {
			return false, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got int64
	err := s.conn.QueryRowContext(ctx, "SELECT `offset` FROM "+s.offsets.sql()+
		" WHERE pipeline = ? AND sink = ? AND source = '' AND `partition` = ''", s.Pipeline, s.ID).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
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
		_ = s.tx.Rollback()
	}
	s.tx, s.Done, s.TxRows, s.Buf = nil, nil, 0, sqlcommon.Buffer{}
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	return s.conf.close(&s.db)
}

// InTx reports whether a transaction is open.
func (s *sink) InTx() bool { return s.tx != nil }

// StorePositions stores ps and the commit token in the open transaction.
func (s *sink) StorePositions(ctx context.Context, ps []stdlib.Position, token int64) error {
	return s.storePositions(ctx, ps, token)
}

// CommitTx commits; a transaction whose COMMIT failed is decided by the
// connection (its id) that ran it.
func (s *sink) CommitTx(context.Context) (func(context.Context, int64) (bool, error), error) {
	id := s.connID
	err := s.tx.Commit()
	return func(ctx context.Context, token int64) (bool, error) { return s.readToken(ctx, token, id) }, err
}

// decide tells whether the transaction that carried token, run by the
// connection id, committed.
func (s *sink) decide(ctx context.Context, token, id int64) (bool, error) {
	return s.Decide(ctx, token, func(ctx context.Context, token int64) (bool, error) { return s.readToken(ctx, token, id) })
}

// TxCommitted forgets the transaction that committed.
func (s *sink) TxCommitted() { s.tx, s.stale = nil, false }

// Transient reports an error that a new connection may cure.
func (s *sink) Transient(err error) bool { return transient(err) }

// Redact removes the password from err.
func (s *sink) Redact(err error) error { return s.conf.redact(err) }
