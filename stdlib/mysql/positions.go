package mysql

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

// The offsets table (pipe_offsets) holds the positions an exactly-once
// sink committed with its rows (see sqlcommon): target is the InnoDB id of
// the table the rows went to. Its text columns compare bytes (utf8mb4_bin):
// partitions "A" and "a" are two.

// createOffsets creates the offsets table.
func (s *sink) createOffsets(ctx context.Context, q queryer) error {
	_, err := q.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+s.offsets.sql()+` (
  pipeline    varchar(190) NOT NULL,
  sink        varchar(190) NOT NULL,
  source      varchar(190) NOT NULL,
  `+"`partition`"+` varchar(190) NOT NULL,
  `+"`offset`"+`    bigint NOT NULL,
  identity    varchar(1024) NULL,
  target      bigint unsigned NULL,
  PRIMARY KEY (pipeline, sink, source, `+"`partition`"+`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`)
	if err != nil {
		return fmt.Errorf("create offsets table %q: %w", s.offsets.String(), err)
	}
	return nil
}

// heldRow is one position row of the offsets table; its target is the
// InnoDB id of the table its rows went to.
type heldRow = sqlcommon.Held[uint64]

// readHeld returns the positions the sink task holds for its table: those
// stored for another table are reported and left out, and deleted with the
// next commit (see storePositions).
func (s *sink) readHeld(ctx context.Context) ([]stdlib.Position, error) {
	rows, err := s.readRows(ctx, s.conn, "sink = ?", s.ID)
	if err != nil {
		return nil, err
	}
	held, stale := sqlcommon.HeldFor(s.Log, "mysql", s.table.String(), s.target, rows)
	s.stale = stale
	return held, nil
}

// stageSinks selects the rows of every task of the stage: the sink column
// is the stage name, or "stage/task" when it runs several tasks.
const stageSinks = "SUBSTRING_INDEX(sink, '/', 1) = ?"

// forgetSQL deletes every position of every task of the stage (the commit
// tokens stay); its arguments are the pipeline and the stage.
const forgetSQL = `WHERE pipeline = ? AND ` + stageSinks + ` AND source <> ''`

// readRows returns the position rows of the pipeline matching where,
// which takes one argument (arg).
func (s *sink) readRows(ctx context.Context, q queryer, where string, arg string) ([]heldRow, error) {
	rows, err := q.QueryContext(ctx, "SELECT source, `partition`, `offset`, COALESCE(identity, ''), COALESCE(target, 0), "+
		"COALESCE((SELECT CONCAT(SUBSTRING_INDEX(t.NAME, '/', 1), '.', SUBSTRING_INDEX(t.NAME, '/', -1)) FROM information_schema.INNODB_SYS_TABLES t WHERE t.TABLE_ID = o.target), '') "+
		"FROM "+s.offsets.sql()+" o WHERE pipeline = ? AND "+where+" AND source <> '' ORDER BY source, `partition`, sink",
		s.Pipeline, arg)
	if err != nil {
		var me *mysql.MySQLError
		if !errors.As(err, &me) || transient(err) {
			return nil, fmt.Errorf("read offsets: %w", err)
		}
		// information_schema.INNODB_SYS_TABLES not readable: without names.
		rows, err = q.QueryContext(ctx, "SELECT source, `partition`, `offset`, COALESCE(identity, ''), COALESCE(target, 0), '' "+
			"FROM "+s.offsets.sql()+" o WHERE pipeline = ? AND "+where+" AND source <> '' ORDER BY source, `partition`, sink",
			s.Pipeline, arg)
		if err != nil {
			return nil, fmt.Errorf("read offsets: %w", err)
		}
	}
	defer rows.Close()
	var held []heldRow
	for rows.Next() {
		var h heldRow
		if err := rows.Scan(&h.Source, &h.Partition, &h.Offset, &h.Identity, &h.Target, &h.Was); err != nil {
			return nil, fmt.Errorf("read offsets: %w", err)
		}
		held = append(held, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	return held, nil
}

// forTarget returns the rows stored for the sink's table (or for an
// unknown one) and warns, once per table, of those stored for another.
func (s *sink) forTarget(rows []heldRow) []heldRow {
	return sqlcommon.ForTarget(s.Log, "mysql", s.table.String(), s.target, rows)
}

// storePositions upserts the checkpoint's positions, with the commit token,
// into the offsets table in the open transaction; positions held for
// another table are deleted first, once.
func (s *sink) storePositions(ctx context.Context, ps []stdlib.Position, token int64) error {
	if s.stale {
		if _, err := s.tx.ExecContext(ctx, "DELETE FROM "+s.offsets.sql()+" WHERE pipeline = ? AND sink = ? AND target <> ?",
			s.Pipeline, s.ID, s.target); err != nil {
			return err
		}
	}
	return upsertPositions(ctx, s.tx, s.offsets, s.Pipeline, s.ID, s.target, ps, &token)
}

// upsertPositions stores positions of one sink task for the table target,
// with the commit token row when token is not nil.
func upsertPositions(ctx context.Context, q queryer, offsets tableName, pipeline, sinkID string, target uint64,
	ps []stdlib.Position, token *int64) error {
	var args []any
	for _, p := range ps {
		var id any
		if p.Identity != "" {
			id = p.Identity
		}
		args = append(args, pipeline, sinkID, p.Source, p.Partition, p.Offset, id, target)
	}
	if token != nil {
		args = append(args, pipeline, sinkID, "", "", *token, nil, target)
	}
	if len(args) == 0 {
		return nil
	}
	_, err := q.ExecContext(ctx, "INSERT INTO "+offsets.sql()+" (pipeline, sink, source, `partition`, `offset`, identity, target) VALUES "+
		tuples(len(args)/7, 7)+" ON DUPLICATE KEY UPDATE `offset` = VALUES(`offset`), identity = VALUES(identity), target = VALUES(target)",
		args...)
	return err
}

// StoredPositions implements stdlib.PositionStore: the positions every task
// of the stage holds for its table, one per partition (when tasks differ,
// the lowest). An at_least_once sink, or one whose table or offsets table
// does not exist, holds none.
func (s *sink) StoredPositions(ctx context.Context) ([]stdlib.Position, error) {
	if !s.Exactly {
		return nil, nil
	}
	var out []stdlib.Position
	err := s.offline(ctx, func(q queryer) error {
		if s.target == 0 || !s.hasOffsets {
			return nil
		}
		rows, err := s.readRows(ctx, q, stageSinks, s.Stage)
		if err != nil {
			return err
		}
		out = sqlcommon.Lowest(s.forTarget(rows))
		return nil
	})
	if err != nil {
		return nil, s.conf.redact(err)
	}
	return out, nil
}

// SetPositions implements stdlib.PositionStore, in one transaction: the
// positions of every task of the stage for the partitions of source in
// Reset (all of source's when reset is empty) are deleted, and each task is
// given set, stored for the table the sink writes to now (which must
// exist).
func (s *sink) SetPositions(ctx context.Context, source string, reset []string, set []stdlib.Position) error {
	if !s.Exactly {
		return nil
	}
	for _, p := range set {
		if p.Source != source {
			return fmt.Errorf("position %s is not of source %q", p, source)
		}
	}
	if len(set) > 0 {
		// CREATE TABLE commits: before the transaction.
		err := s.offline(ctx, func(q queryer) error {
			if s.target == 0 {
				return fmt.Errorf("table %q does not exist: positions are kept for a table (create it first; a table the sink creates starts with none)", s.table.String())
			}
			return s.createOffsets(ctx, q)
		})
		if err != nil {
			return s.conf.redact(err)
		}
	}
	err := s.offline(ctx, func(q queryer) error {
		if !s.hasOffsets {
			return nil
		}
		tx, err := s.conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		del := "DELETE FROM " + s.offsets.sql() + " " + forgetSQL + " AND source = ?"
		args := []any{s.Pipeline, s.Stage, source}
		if len(reset) > 0 {
			del += " AND `partition` IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(reset)), ", ") + ")"
			for _, p := range reset {
				args = append(args, p)
			}
		}
		if _, err := tx.ExecContext(ctx, del, args...); err != nil {
			return fmt.Errorf("reset positions: %w", err)
		}
		for task := range max(s.Tasks, 1) {
			if err := upsertPositions(ctx, tx, s.offsets, s.Pipeline, sqlcommon.TaskSinkID(s.Stage, task, s.Tasks), s.target, set, nil); err != nil {
				return fmt.Errorf("set positions: %w", err)
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return s.conf.redact(err)
	}
	return nil
}

// offline connects for StoredPositions or SetPositions, finds the table
// and the offsets table, runs fn and disconnects.
func (s *sink) offline(ctx context.Context, fn func(q queryer) error) error {
	if err := s.dial(ctx); err != nil {
		return err
	}
	defer func() {
		s.Reset()
		if s.db != nil {
			s.db.Close()
			s.db = nil
		}
	}()
	if err := s.Resolve(ctx); err != nil {
		return err
	}
	var err error
	if s.target, err = tableID(ctx, s.conn, s.table); err != nil {
		return err
	}
	var n int
	if err := s.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
		s.offsets.DB, s.offsets.Name).Scan(&n); err != nil {
		return err
	}
	s.hasOffsets = n > 0
	return fn(s.conn)
}

// isUnknownThread reports the error of KILL for a connection already gone.
func isUnknownThread(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == erUnknownThread
}

var _ stdlib.PositionStore = (*sink)(nil)
