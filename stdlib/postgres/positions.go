package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

// The offsets table (pipe_offsets) holds, per pipeline, sink task, source
// and partition, the position an exactly-once sink committed with its rows,
// the identity of the partition it points into, and target: the OID of the
// table the rows went to. Positions stored for another table (the target
// was dropped and created again, or `table` now names another one) are not
// held. Rows without identity or target (stored before these columns
// existed) are unknown and match any.

// dbtx is what both a connection and a transaction offer.
type dbtx interface {
	queryer
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// createOffsets creates the offsets table, or adds the identity and target
// columns to one created before they existed.
func (s *sink) createOffsets(ctx context.Context, db dbtx) error {
	sql := "CREATE TABLE IF NOT EXISTS " + s.offsets.sql() + ` (
  pipeline  text   NOT NULL,
  sink      text   NOT NULL,
  source    text   NOT NULL,
  partition text   NOT NULL,
  "offset"  bigint NOT NULL,
  identity  text,
  target    oid,
  PRIMARY KEY (pipeline, sink, source, partition)
)`
	if _, err := db.Exec(ctx, sql); err != nil && !alreadyExists(err) {
		return fmt.Errorf("create offsets table %q: %w", s.offsets.String(), err)
	}
	if old, err := s.oldOffsets(ctx, db); err != nil || !old {
		return err
	}
	// ALTER TABLE locks the table whole: only when a column is missing.
	if _, err := db.Exec(ctx, "ALTER TABLE "+s.offsets.sql()+
		" ADD COLUMN IF NOT EXISTS identity text, ADD COLUMN IF NOT EXISTS target oid"); err != nil {
		return fmt.Errorf("add identity and target to offsets table %q: %w", s.offsets.String(), err)
	}
	s.Log.Info("postgres: added columns identity and target to the offsets table", "table", s.offsets.String())
	return nil
}

// oldOffsets reports whether the offsets table lacks the identity or
// target column.
func (s *sink) oldOffsets(ctx context.Context, q queryer) (bool, error) {
	cols, err := readColumns(ctx, q, s.offsets)
	if err != nil {
		return false, err
	}
	have := 0
	for _, c := range cols {
		if c.Name == "identity" || c.Name == "target" {
			have++
		}
	}
	return have < 2, nil
}

// tableOID returns the OID of table t, 0 if it does not exist.
func tableOID(ctx context.Context, q queryer, t tableName) (uint32, error) {
	var oid uint32
	err := q.QueryRow(ctx, `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read oid of %q: %w", t.String(), err)
	}
	return oid, nil
}

// heldRow is one position row of the offsets table; its target is the
// OID of the table its rows went to.
type heldRow = sqlcommon.Held[uint32]

// readHeld returns the positions the sink task holds for its table: those
// stored for another table are reported and left out, and deleted with the
// next commit (see storePositions).
func (s *sink) readHeld(ctx context.Context) ([]stdlib.Position, error) {
	rows, err := s.readRows(ctx, s.conn, "sink = $2", s.ID)
	if err != nil {
		return nil, err
	}
	held, stale := sqlcommon.HeldFor(s.Log, "postgres", s.table.String(), s.target, rows)
	s.stale = stale
	return held, nil
}

// stageSinks selects the rows of every task of the stage: the sink column
// is the stage name, or "stage/task" when it runs several tasks.
const stageSinks = "split_part(sink, '/', 1) = $2"

// readRows returns the position rows of the pipeline matching where, which
// uses $2 (arg). An offsets table without the identity and target columns
// gives them unknown.
func (s *sink) readRows(ctx context.Context, q queryer, where string, arg string) ([]heldRow, error) {
	old, err := s.oldOffsets(ctx, q)
	if err != nil {
		return nil, err
	}
	cols := `coalesce(identity, ''), coalesce(target, 0), coalesce((SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = o.target), '')`
	if old {
		cols = `'', 0::oid, ''`
	}
	rows, err := q.Query(ctx, `SELECT source, partition, "offset", `+cols+` FROM `+s.offsets.sql()+
		` o WHERE pipeline = $1 AND `+where+` AND source <> '' ORDER BY source, partition, sink`, s.Pipeline, arg)
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	held, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (heldRow, error) {
		var h heldRow
		err := r.Scan(&h.Source, &h.Partition, &h.Offset, &h.Identity, &h.Target, &h.Was)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	return held, nil
}

// forTarget returns the rows stored for the sink's table (or for an
// unknown one) and warns, once per table, of those stored for another.
func (s *sink) forTarget(rows []heldRow) []heldRow {
	return sqlcommon.ForTarget(s.Log, "postgres", s.table.String(), s.target, rows)
}

// storePositions upserts the checkpoint's positions, with the commit token,
// into the offsets table in tx; positions held for another table are
// deleted first, once.
func (s *sink) storePositions(ctx context.Context, tx pgx.Tx, ps []stdlib.Position, token int64) error {
	if err := s.checkEpoch(ctx, tx); err != nil {
		return err
	}
	if s.stale {
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.offsets.sql()+` WHERE pipeline = $1 AND sink = $2 AND target <> $3`,
			s.Pipeline, s.ID, s.target); err != nil {
			return err
		}
	}
	return upsertPositions(ctx, tx, s.offsets, s.Pipeline, s.ID, s.target, ps, &token)
}

// upsertPositions stores positions of one sink task for the table target,
// with the commit token row when token is not nil.
func upsertPositions(ctx context.Context, tx pgx.Tx, offsets tableName, pipeline, sinkID string, target uint32,
	ps []stdlib.Position, token *int64) error {
	n := len(ps) + 1
	srcs, parts, offs, ids := make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n), make([]string, 0, n)
	for _, p := range ps {
		srcs, parts, offs, ids = append(srcs, p.Source), append(parts, p.Partition), append(offs, p.Offset), append(ids, p.Identity)
	}
	if token != nil {
		srcs, parts, offs, ids = append(srcs, ""), append(parts, ""), append(offs, *token), append(ids, "")
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+offsets.sql()+` (pipeline, sink, source, partition, "offset", identity, target)
SELECT $1, $2, u.s, u.p, u.o, nullif(u.i, ''), $7 FROM unnest($3::text[], $4::text[], $5::int8[], $6::text[]) AS u(s, p, o, i)
ON CONFLICT (pipeline, sink, source, partition)
DO UPDATE SET "offset" = EXCLUDED."offset", identity = EXCLUDED.identity, target = EXCLUDED.target`,
		pipeline, sinkID, srcs, parts, offs, ids, target)
	return err
}

// forgetSQL deletes every position of every task of the stage (the commit
// tokens stay).
const forgetSQL = `WHERE pipeline = $1 AND ` + stageSinks + ` AND source <> ''`

// StoredPositions implements stdlib.PositionStore: the positions every task
// of the stage holds for its table, one per partition (when tasks differ,
// the lowest: every task holds the partition up to there). Positions
// stored for another table are left out with a warning, as at Open; an
// at_least_once sink, or one whose table or offsets table does not exist,
// holds none.
func (s *sink) StoredPositions(ctx context.Context) ([]stdlib.Position, error) {
	if !s.Exactly {
		return nil, nil
	}
	var out []stdlib.Position
	err := s.offline(ctx, func(tx pgx.Tx) error {
		if s.target == 0 || !s.hasOffsets {
			return nil
		}
		rows, err := s.readRows(ctx, tx, stageSinks, s.Stage)
		if err != nil {
			return err
		}
		out = sqlcommon.Lowest(s.forTarget(rows))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetPositions implements stdlib.PositionStore, in one transaction: the
// positions of every task of the stage for the partitions of source in
// Reset (all of source's when reset is empty) are deleted, and each task is
// given set, stored for the table the sink writes to now (which must
// exist). An at_least_once sink keeps none: nothing to change.
func (s *sink) SetPositions(ctx context.Context, source string, reset []string, set []stdlib.Position) error {
	if !s.Exactly {
		return nil
	}
	for _, p := range set {
		if p.Source != source {
			return fmt.Errorf("position %s is not of source %q", p, source)
		}
	}
	err := s.offline(ctx, func(tx pgx.Tx) error {
		if len(set) > 0 {
			if s.target == 0 {
				return fmt.Errorf("table %q does not exist: positions are kept for a table (create it first; a table the sink creates starts with none)", s.table.String())
			}
			if err := s.createOffsets(ctx, tx); err != nil {
				return err
			}
		} else if !s.hasOffsets {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.offsets.sql()+` `+forgetSQL+
			` AND source = $3 AND (coalesce(cardinality($4::text[]), 0) = 0 OR partition = ANY($4))`,
			s.Pipeline, s.Stage, source, reset); err != nil {
			return fmt.Errorf("reset positions: %w", err)
		}
		for task := range max(s.Tasks, 1) {
			if err := upsertPositions(ctx, tx, s.offsets, s.Pipeline, sqlcommon.TaskSinkID(s.Stage, task, s.Tasks), s.target, set, nil); err != nil {
				return fmt.Errorf("set positions: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return nil
}

// offline connects for StoredPositions or SetPositions, finds the table
// and the offsets table, runs fn in a transaction and disconnects.
func (s *sink) offline(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if err := s.dial(ctx); err != nil {
		return err
	}
	defer s.Reset()
	if err := s.Resolve(ctx); err != nil {
		return err
	}
	var err error
	if s.target, err = tableOID(ctx, s.conn, s.table); err != nil {
		return err
	}
	off, err := tableOID(ctx, s.conn, s.offsets)
	if err != nil {
		return err
	}
	s.hasOffsets = off != 0
	return pgx.BeginFunc(ctx, s.conn, fn)
}

var _ stdlib.PositionStore = (*sink)(nil)
