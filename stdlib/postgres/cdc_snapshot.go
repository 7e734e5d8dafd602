package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pipe.dev/pipe/stdlib"
)

// cdcSnapshotChunk is how many rows one statement of the snapshot reads.
const cdcSnapshotChunk = 5000

// cdcSnapshotDone is the offset of a table's last row in the snapshot: a
// position at it says the table was read whole.
const cdcSnapshotDone = math.MaxInt64

// snapshotPartition is the partition of a table's snapshot rows.
func snapshotPartition(table string) string { return "snapshot:" + table }

// cdcSnapshot is the snapshot of the captured tables in progress: the
// tables left to read and, for the one being read, where it stands.
type cdcSnapshot struct {
	// consistent: the rows are read in the snapshot the slot exported
	// when it was created, exactly those the stream does not carry;
	// else each chunk reads the rows as they are now (a resumed
	// snapshot, converged by the stream from the slot's position).
	consistent bool
	conn       *pgx.Conn // the connection reading (in the exported snapshot's transaction when consistent)
	lsn        pglogrepl.LSN
	at         time.Time // the snapshot's time: commit_time of its records
	tables     []*snapTable
}

// snapTable is one table to read.
type snapTable struct {
	name     tableName
	key      []string // primary key columns, the order read in
	intKey   bool     // one integer column: offsets are its values
	identity string
	last     []any // key values of the last row emitted; nil: none yet
	next     int64 // with !intKey: the next row's offset
	lastOff  int64 // offset of the last record emitted in this run
	emitted  bool  // a record of the table was emitted in this run
}

func (t *snapTable) partition() string {
	return snapshotPartition(t.name.Schema + "." + t.name.Name)
}

// createSlotSnapshot creates the slot on a replication connection with
// an exported snapshot, and imports that snapshot into a transaction of
// a new ordinary connection, kept for reading the tables. The
// replication connection then closes: the imported snapshot stays valid
// for the transaction.
func (s *cdcSource) createSlotSnapshot(ctx context.Context) error {
	repl, err := s.replConn(ctx)
	if err != nil {
		return err
	}
	defer repl.Close(context.WithoutCancel(ctx))
	res, err := pglogrepl.ParseCreateReplicationSlot(repl.Exec(ctx,
		"CREATE_REPLICATION_SLOT "+quote(s.slot)+" LOGICAL pgoutput EXPORT_SNAPSHOT"))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42710" { // created meanwhile
			return nil
		}
		return fmt.Errorf("create replication slot %q: %w", s.slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("create replication slot %q: consistent point %q: %w", s.slot, res.ConsistentPoint, err)
	}
	s.log.Info("postgres_cdc: created the replication slot", "slot", s.slot, "consistent_point", lsn.String())
	conn, err := connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	if _, err = conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err == nil {
		_, err = conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(res.SnapshotName, "'", "''")+"'")
	}
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		// The slot stays: the next attempt finds it and takes the
		// resumed path, reading the rows as they are then.
		return fmt.Errorf("import the snapshot of replication slot %q: %w", s.slot, err)
	}
	s.snap = &cdcSnapshot{consistent: true, conn: conn, lsn: lsn}
	return nil
}

// replConn opens a connection in logical replication mode.
func (s *cdcSource) replConn(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := parseDSN(s.dsn)
	if err != nil {
		return nil, err
	}
	pc := cfg.Config.Copy()
	pc.RuntimeParams["replication"] = "database"
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", err)
	}
	return conn, nil
}

// planSnapshot decides what the snapshot reads, from the positions
// resumed. streamed says the slot's partition resumed a position: changes
// were delivered, so the snapshot was complete and nothing is read. On an
// error the snapshot's connection is closed: a retry starts over on a new
// one, with the rows as they are then.
func (s *cdcSource) planSnapshot(ctx context.Context, resume stdlib.Resumer, streamed bool) (err error) {
	defer func() {
		if err != nil {
			s.closeSnapshot()
		}
	}()
	if streamed {
		s.closeSnapshot()
		return nil
	}
	if s.snap == nil { // the slot existed: a snapshot interrupted, or never taken
		conn, err := connect(ctx, s.dsn)
		if err != nil {
			return err
		}
		var lsn pglogrepl.LSN
		var confirmed *string
		err = conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&confirmed)
		if err == nil && confirmed != nil {
			lsn, err = pglogrepl.ParseLSN(*confirmed)
		}
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return fmt.Errorf("read replication slot %q: %w", s.slot, err)
		}
		s.snap = &cdcSnapshot{conn: conn, lsn: lsn}
	}
	sn := s.snap
	if err := sn.conn.QueryRow(ctx, "SELECT now()").Scan(&sn.at); err != nil {
		return fmt.Errorf("read the snapshot's time: %w", err)
	}
	held, err := s.publicationTables(ctx, sn.conn)
	if err != nil {
		return err
	}
	var resumed []string
	sn.tables = sn.tables[:0]
	for _, tn := range held {
		n := tn.Schema + "." + tn.Name
		schema, name := tn.Schema, tn.Name
		t := &snapTable{name: tn, key: s.pks[n]}
		if len(t.key) == 0 {
			return fmt.Errorf("table %q has no primary key: its snapshot cannot be read in key order (add a primary key, or set snapshot = never)", n)
		}
		var oid uint32
		var typ string
		err := sn.conn.QueryRow(ctx, `SELECT c.oid, format_type(a.atttypid, NULL) FROM pg_class c
JOIN pg_namespace ns ON ns.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
WHERE ns.nspname = $1 AND c.relname = $2 AND a.attname = $3`, schema, name, t.key[0]).Scan(&oid, &typ)
		if err != nil {
			return fmt.Errorf("read the key of table %q: %w", n, err)
		}
		t.intKey = len(t.key) == 1 && (typ == "smallint" || typ == "integer" || typ == "bigint")
		// The identity ties the positions to this slot's consistent point:
		// a slot created again is snapshotted again.
		t.identity = fmt.Sprintf("%s from %s table %d", s.identity, sn.lsn, oid)
		off, ok := int64(0), false
		if resume != nil {
			off, ok = resume.Resume(snapshotPartition(n), t.identity)
		}
		switch {
		case ok && off == cdcSnapshotDone:
			continue
		case ok && t.intKey:
			t.last = []any{off}
			resumed = append(resumed, fmt.Sprintf("%s after %s = %d", n, t.key[0], off))
		case ok:
			t.next = off + 1
			resumed = append(resumed, n+" from its first row")
		default:
			if !sn.consistent {
				resumed = append(resumed, n+" from its first row")
			}
		}
		sn.tables = append(sn.tables, t)
	}
	if len(sn.tables) == 0 {
		s.closeSnapshot()
		return nil
	}
	s.snapPending = map[string]int64{}
	for _, t := range sn.tables {
		s.snapPending[t.partition()] = cdcSnapshotDone
	}
	if !sn.consistent {
		s.log.Warn("postgres_cdc: the slot existed (an interrupted snapshot, or a slot made beforehand) and its exported snapshot is gone: "+
			"reading the tables' rows as they are now; the stream from the slot's position then replays the changes made since, "+
			"which converges a replica (a row changed meanwhile comes both as read and as its changes)",
			"slot", s.slot, "position", sn.lsn.String(), "tables", strings.Join(resumed, ", "))
	} else {
		s.log.Info("postgres_cdc: reading the snapshot of the captured tables", "slot", s.slot, "consistent_point", sn.lsn.String(), "tables", len(sn.tables))
	}
	return nil
}

// snapshotRead reads the next chunk of the snapshot. It returns no
// records once every table was read; the snapshot's connection is then
// closed. A lost connection takes the exported snapshot with it: the
// reading goes on after the last row emitted, with the rows as they are
// now, as a resumed snapshot does.
func (s *cdcSource) snapshotRead(ctx context.Context) ([]stdlib.Record, error) {
	sn := s.snap
	b := s.backoff()
	for len(sn.tables) > 0 {
		t := sn.tables[0]
		var recs []stdlib.Record
		var more bool
		var err error
		if sn.conn == nil {
			sn.conn, err = connect(ctx, s.dsn)
		}
		if err == nil {
			recs, more, err = s.readChunk(ctx, t)
		}
		if err != nil {
			if !transient(err) || ctx.Err() != nil {
				return nil, fmt.Errorf("postgres_cdc source %q: %w", s.stage, err)
			}
			if werr := b.Wait(ctx, err); werr != nil {
				return nil, fmt.Errorf("postgres_cdc source %q: %w", s.stage, werr)
			}
			if sn.conn != nil {
				sn.conn.Close(context.WithoutCancel(ctx))
				sn.conn = nil
			}
			if sn.consistent {
				sn.consistent = false
				s.log.Warn("postgres_cdc: the snapshot's connection was lost; reading on with the rows as they are now "+
					"(the stream from the slot's position converges them)", "slot", s.slot, "table", t.name.String())
			}
			continue
		}
		if len(recs) > 0 {
			t.lastOff, t.emitted = recs[len(recs)-1].Pos.Offset, true
		}
		if !more {
			sn.tables = sn.tables[1:]
			s.log.Info("postgres_cdc: snapshot of the table read", "table", t.name.String())
			// The table is covered once a checkpoint covers its last
			// record: the end marker, or, when the last chunk came empty,
			// the record before it; with none in this run, at once.
			part := t.partition()
			switch {
			case len(recs) > 0:
			case t.emitted:
				s.snapPending[part] = t.lastOff
			default:
				delete(s.snapPending, part)
			}
		}
		if len(recs) > 0 {
			return recs, nil
		}
	}
	s.log.Info("postgres_cdc: snapshot read; streaming the changes from the slot", "slot", s.slot, "position", sn.lsn.String())
	s.closeSnapshot()
	return nil, nil
}

// readChunk reads the rows after t.last in key order, one chunk; more
// says rows follow. The table's last row gets the offset cdcSnapshotDone.
func (s *cdcSource) readChunk(ctx context.Context, t *snapTable) ([]stdlib.Record, bool, error) {
	keys := make([]string, len(t.key))
	params := make([]string, len(t.key))
	for i, k := range t.key {
		keys[i] = quote(k)
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	q := "SELECT * FROM " + t.name.sql()
	if t.last != nil {
		q += " WHERE (" + strings.Join(keys, ", ") + ") > (" + strings.Join(params, ", ") + ")"
	}
	q += " ORDER BY " + strings.Join(keys, ", ") + fmt.Sprintf(" LIMIT %d", cdcSnapshotChunk+1)
	rows, err := s.snap.conn.Query(ctx, q, t.last...)
	if err != nil {
		return nil, false, fmt.Errorf("read the snapshot of table %q: %w", t.name.String(), err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	cols := make([]column, len(fds))
	keyAt := make([]int, len(t.key))
	for i, fd := range fds {
		cols[i].Name = fd.Name
		if dt, ok := rows.Conn().TypeMap().TypeForOID(fd.DataTypeOID); ok {
			cols[i].Type = dt.Name
		}
		if k := slices.Index(t.key, fd.Name); k >= 0 {
			keyAt[k] = i
		}
	}
	table := t.name.Schema + "." + t.name.Name
	var recs []stdlib.Record
	more := false
	for rows.Next() {
		if len(recs) == cdcSnapshotChunk {
			more = true
			break
		}
		vals, err := rows.Values()
		if err != nil {
			return nil, false, fmt.Errorf("read the snapshot of table %q: %w", t.name.String(), err)
		}
		raws := rows.RawValues()
		row := make(map[string]any, len(vals))
		key := make(map[string]any, len(t.key))
		var errs []string
		for i, v := range vals {
			nv, err := fromColumn(&cols[i], v, raws[i])
			if err != nil {
				errs = append(errs, fmt.Sprintf("column %q: %v", cols[i].Name, err))
				continue
			}
			row[cols[i].Name] = nv
		}
		last := make([]any, len(t.key))
		for k, i := range keyAt {
			last[k] = vals[i]
			key[t.key[k]] = row[t.key[k]]
		}
		t.last = last
		var off int64
		if t.intKey {
			off = toInt64(vals[keyAt[0]])
		} else {
			off = t.next
			t.next++
		}
		r := stdlib.Record{Key: key, Partition: -1, Time: s.snap.at,
			Pos: stdlib.Position{Source: s.stage, Partition: snapshotPartition(table), Offset: off, Identity: t.identity},
			Value: map[string]any{"op": "read", "table": table, "xid": int64(0), "lsn": s.snap.lsn.String(),
				"commit_time": s.snap.at, "before": nil, "after": s.keep(row)}}
		if len(errs) > 0 {
			r.Err = fmt.Errorf("table %s: %s", table, strings.Join(errs, "; "))
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read the snapshot of table %q: %w", t.name.String(), err)
	}
	if !more && len(recs) > 0 {
		recs[len(recs)-1].Pos.Offset = cdcSnapshotDone
	}
	return recs, more, nil
}

// toInt64 returns an integer key's value.
func toInt64(v any) int64 {
	switch x := v.(type) {
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	}
	return 0
}

// closeSnapshot ends the snapshot's transaction and connection.
func (s *cdcSource) closeSnapshot() {
	if s.snap == nil {
		return
	}
	if s.snap.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.snap.conn.Close(ctx)
		cancel()
	}
	s.snap = nil
}
