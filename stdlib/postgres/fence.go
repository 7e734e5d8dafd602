package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// The fences table of an exactly-once sink (its offsets table's name with
// "_fences" appended, in the same schema) holds one row per epoch of each
// sink task of each pipeline instance: the instance (`instances = N` on a
// cluster; 0 for `pipe run`), the epoch, who opened it (the cluster
// worker, else host:pid), when, when it was fenced (null while it is the
// current epoch), and how many commits it made, the first and the last.
//
// Open takes the next epoch: in one transaction it marks the current
// epoch's row fenced (waiting for a commit of that epoch in flight, which
// holds the row) and adds the new epoch's row; only then does it read the
// positions held. Every commit updates its epoch's row in the transaction
// of its rows and positions, on the condition that the row is not fenced:
// a run that lost its instance (a paused worker that comes back, a
// process that stalled while another took over) finds its epoch fenced,
// and its commit is refused and rolled back. So two runs of one instance
// never both commit: each epoch's last commit precedes its fencing, which
// precedes the next epoch's opening.

// keepEpochs is how many epochs of an instance the fences table keeps.
const keepEpochs = 100

// errFenced is a commit refused because another run of the instance took
// a later epoch.
var errFenced = errors.New("fenced: another run of this pipeline instance took over the sink (a later epoch); this run's commit is refused")

// fencesTable returns the fences table, next to the resolved offsets table.
func (s *sink) fencesTable() tableName {
	return tableName{Schema: s.offsets.Schema, Name: s.offsets.Name + "_fences"}
}

// createFences creates the fences table if need be.
func (s *sink) createFences(ctx context.Context, db dbtx) error {
	t := s.fencesTable()
	_, err := db.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+t.sql()+` (
  pipeline     text        NOT NULL,
  sink         text        NOT NULL,
  instance     int         NOT NULL,
  epoch        bigint      NOT NULL,
  owner        text        NOT NULL,
  opened       timestamptz NOT NULL,
  fenced       timestamptz,
  commits      bigint      NOT NULL DEFAULT 0,
  first_commit timestamptz,
  last_commit  timestamptz,
  PRIMARY KEY (pipeline, sink, instance, epoch)
)`)
	if err != nil && !alreadyExists(err) {
		return fmt.Errorf("create fences table %q: %w", t.String(), err)
	}
	return nil
}

// owner names this run in the fences table.
func (s *sink) owner() string {
	if s.ownerName != "" {
		return s.ownerName
	}
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// fence takes the next epoch of the sink task's instance, fencing the
// current one; it waits for a commit of the current epoch in flight.
func (s *sink) fence(ctx context.Context) error {
	if err := s.createFences(ctx, s.conn); err != nil {
		return err
	}
	t := s.fencesTable().sql()
	for {
		var epoch int64
		err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
			epoch = 0
			err := tx.QueryRow(ctx, `SELECT coalesce(max(epoch), 0) FROM `+t+
				` WHERE pipeline = $1 AND sink = $2 AND instance = $3`, s.Pipeline, s.ID, s.instance).Scan(&epoch)
			if err != nil {
				return err
			}
			// Changing the row (not only locking it) makes a commit of
			// this epoch that waits for the row see it fenced.
			if _, err := tx.Exec(ctx, `UPDATE `+t+` SET fenced = clock_timestamp()
WHERE pipeline = $1 AND sink = $2 AND instance = $3 AND epoch = $4 AND fenced IS NULL`,
				s.Pipeline, s.ID, s.instance, epoch); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `INSERT INTO `+t+` (pipeline, sink, instance, epoch, owner, opened)
VALUES ($1, $2, $3, $4, $5, clock_timestamp()) ON CONFLICT DO NOTHING`,
				s.Pipeline, s.ID, s.instance, epoch+1, s.owner())
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				epoch = -1 // another run took it meanwhile: again
				return nil
			}
			epoch++
			_, err = tx.Exec(ctx, `DELETE FROM `+t+` WHERE pipeline = $1 AND sink = $2 AND instance = $3 AND epoch <= $4`,
				s.Pipeline, s.ID, s.instance, epoch-keepEpochs)
			return err
		})
		if err != nil {
			return fmt.Errorf("take the next epoch in %q: %w", s.fencesTable().String(), err)
		}
		if epoch > 0 {
			s.epoch = epoch
			s.Log.Info("postgres: sink took its epoch", "instance", s.instance, "epoch", epoch, "owner", s.owner())
			return nil
		}
	}
}

// checkEpoch records a commit of the sink's epoch in tx, or refuses it
// (errFenced) when a later epoch fenced it.
func (s *sink) checkEpoch(ctx context.Context, tx pgx.Tx) error {
	tag, err := tx.Exec(ctx, `UPDATE `+s.fencesTable().sql()+` SET commits = commits + 1,
  first_commit = coalesce(first_commit, clock_timestamp()), last_commit = clock_timestamp()
WHERE pipeline = $1 AND sink = $2 AND instance = $3 AND epoch = $4 AND fenced IS NULL`,
		s.Pipeline, s.ID, s.instance, s.epoch)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("instance %d, epoch %d: %w", s.instance, s.epoch, errFenced)
	}
	return nil
}
