package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
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

// reset drops the connection and the transaction it held.
func (s *sink) reset() {
	if s.tx != nil {
		_ = s.tx.Rollback() // releases the connection, which a Tx holds
	}
	dropConn(s.conn)
	s.conn, s.tx = nil, nil
}

// abort rolls the open transaction back, keeping the connection.
func (s *sink) abort(ctx context.Context) {
	if s.tx != nil {
		if err := s.tx.Rollback(); err != nil {
			s.reset()
			return
		}
	}
	s.tx = nil
}

// begin makes sure a connection and an open transaction exist; a new
// transaction first replays the steps of the one that was lost.
func (s *sink) begin(ctx context.Context) error {
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
	s.txStart = time.Now()
	if len(s.done) > 0 {
		s.log.Info("mysql: replaying transaction", "steps", len(s.done), "rows", s.txRows)
	}
	for _, st := range s.done {
		if err := s.exec(ctx, st); err != nil {
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

// inTx runs fn in the open transaction, reconnecting and replaying on
// connection loss until retry_timeout.
func (s *sink) inTx(ctx context.Context, fn func() error) error {
	b := s.backoff()
	for {
		err := s.begin(ctx)
		if err == nil {
			err = fn()
		}
		if err == nil {
			return nil
		}
		if !transient(err) || ctx.Err() != nil {
			return err
		}
		s.reset()
		if werr := b.Wait(ctx, s.conf.redact(err)); werr != nil {
			return werr
		}
	}
}

// apply runs one step of a Write. A statement the server rejects for the
// content of a row is undone whole while the transaction goes on (InnoDB
// rolls back the statement only): its rows are sent again in halves until
// the rejected ones are found, and returned.
func (s *sink) apply(ctx context.Context, st sqlcommon.Step) (stdlib.RecordErrors, error) {
	err := s.inTx(ctx, func() error { return s.exec(ctx, st) })
	if err == nil {
		s.done = append(s.done, st)
		s.txRows += len(st.Rows)
		return nil, nil
	}
	if !recordError(err) {
		return nil, err
	}
	if len(st.Rows) == 1 {
		return stdlib.RecordErrors{{Index: st.Idx[0], Err: rowError(err)}}, nil
	}
	mid := len(st.Rows) / 2
	first, err := s.apply(ctx, sqlcommon.Step{Op: st.Op, Cols: st.Cols, Rows: st.Rows[:mid], Idx: st.Idx[:mid]})
	if err != nil {
		return nil, err
	}
	second, err := s.apply(ctx, sqlcommon.Step{Op: st.Op, Cols: st.Cols, Rows: st.Rows[mid:], Idx: st.Idx[mid:]})
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
		if !slices.Contains(s.tbl.Keys, c) {
			set = append(set, quote(c)+" = VALUES("+quote(c)+")")
		}
	}
	if len(set) == 0 { // only key columns: keep the row as it is
		set = append(set, quote(cols[0])+" = "+quote(cols[0]))
	}
	return s.insertSQL(cols, n) + " ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
}

func (s *sink) deleteSQL(n int) string {
	if len(s.tbl.Keys) == 1 {
		return "DELETE FROM " + s.table.sql() + " WHERE " + quote(s.tbl.Keys[0]) + " IN (" +
			strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
	}
	return "DELETE FROM " + s.table.sql() + " WHERE (" + columnList(s.tbl.Keys) + ") IN (" + tuples(n, len(s.tbl.Keys)) + ")"
}

// Checkpoint commits the open transaction; exactly_once stores the
// checkpoint's positions in it first.
func (s *sink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.checkpoint(ctx, cp); err != nil {
		err = s.conf.redact(err)
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
		return fmt.Errorf("mysql sink %q: checkpoint %d: %w", s.sinkID, cp.ID, err)
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
			err = s.storePositions(ctx, cp.Positions, token)
		}
		if err == nil {
			id := s.connID
			err = s.tx.Commit()
			if err == nil {
				s.committed()
				return nil
			}
			s.reset()
			if transient(err) && s.exactly && cp != nil {
				ok, cerr := s.decide(ctx, token, id)
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
		if werr := b.Wait(ctx, s.conf.redact(err)); werr != nil {
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
// connection that ran it (id) is killed first if it still exists, so that
// its fate is sealed before the token is read.
func (s *sink) decide(ctx context.Context, token, id int64) (bool, error) {
	b := s.backoff()
	for {
		ok, err := s.readToken(ctx, token, id)
		if err == nil {
			return ok, nil
		}
		if !transient(err) {
			return false, err
		}
		s.reset()
		if werr := b.Wait(ctx, s.conf.redact(err)); werr != nil {
			return false, werr
		}
	}
}

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
		" WHERE pipeline = ? AND sink = ? AND source = '' AND `partition` = ''", s.pipeline, s.sinkID).Scan(&got)
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
	s.tx, s.done, s.txRows, s.buf = nil, nil, 0, sqlcommon.Buffer{}
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	if s.db != nil {
		err := s.db.Close()
		s.db = nil
		if err != nil {
			return fmt.Errorf("mysql sink %q: close: %w", s.sinkID, s.conf.redact(err))
		}
	}
	return nil
}
