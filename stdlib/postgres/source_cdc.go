package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(CDCSpec) }

// CDCSpec describes the postgres_cdc source.
var CDCSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "postgres_cdc",
	Summary: "capture every insert, update, delete and truncate of PostgreSQL tables in commit order (logical replication, pgoutput)",
	Params: []stdlib.Param{
		dsnParam,
		{Name: "publication", Type: stdlib.String, Required: true,
			Doc: "publication whose tables are captured; created FOR the listed tables when missing"},
		{Name: "tables", Type: stdlib.ListOf(stdlib.String),
			Doc: "tables (schema.table or table) the publication must hold; needed to create it"},
		{Name: "slot", Type: stdlib.String, Required: true,
			Doc: "logical replication slot (pgoutput) to stream from; created when missing. The slot is the stream's partition (the snapshot has one per table)"},
		{Name: "batch", Type: stdlib.Int, Default: int64(1000), Doc: "most changes per batch"},
		{Name: "snapshot", Type: stdlib.Enum("initial", "never"), Default: stdlib.Ident("initial"),
			Doc: "initial: read the captured tables' rows (op read) in the slot's snapshot before streaming; never: stream only"},
		{Name: "heartbeat", Type: stdlib.Duration, Default: 10 * time.Second,
			Doc: "how often a heartbeat message is written to the WAL (pg_logical_emit_message) so that the slot advances and the server releases WAL while the captured tables are idle; 0s writes none"},
		retry.Param,
	},
	Meta:           []stdlib.MetaField{stdlib.MetaOffset, stdlib.MetaKey, stdlib.MetaTimestamp},
	Schema:         true,
	SchemaInOutput: true,
	Output: func(attrs map[string]any) *types.Type {
		if row, ok := attrs["schema"].(*types.Type); ok && row != nil && row.Kind == types.Record {
			return cdcOutputOf(row)
		}
		return cdcOutput
	},
	Check:     checkCDC,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newCDC(cfg) },
}

// cdcOutput is the type of a change record; the rows' columns are typed at
// run time from the tables' columns.
var cdcOutput = types.RecordOf(
	&types.Field{Name: "op", Type: types.StringType},
	&types.Field{Name: "table", Type: types.StringType},
	&types.Field{Name: "xid", Type: types.IntType},
	&types.Field{Name: "lsn", Type: types.StringType},
	&types.Field{Name: "commit_time", Type: types.TimestampType},
	&types.Field{Name: "before", Type: types.MapOf(types.AnyType).WithOptional(true)},
	&types.Field{Name: "after", Type: types.MapOf(types.AnyType).WithOptional(true)},
)

// cdcOutputOf is the type of a change record whose rows are of type row
// (the source's schema): after is a row; before holds the replica
// identity's columns only (all of them with REPLICA IDENTITY FULL), so
// each of its fields is optional.
func cdcOutputOf(row *types.Type) *types.Type {
	before := make([]*types.Field, len(row.Fields))
	for i, f := range row.Fields {
		before[i] = &types.Field{Name: f.Name, Type: f.Type.WithOptional(true)}
	}
	return types.RecordOf(
		cdcOutput.Fields[0], cdcOutput.Fields[1], cdcOutput.Fields[2], cdcOutput.Fields[3], cdcOutput.Fields[4],
		&types.Field{Name: "before", Type: types.RecordOf(before...).WithOptional(true)},
		&types.Field{Name: "after", Type: row.WithOptional(true)},
	)
}

// CDCIndexBits is how many low bits of a change's offset hold its index
// within its transaction: offset = commit LSN << CDCIndexBits | index. A
// transaction may hold at most 1<<CDCIndexBits - 1 changes, and offsets
// stay positive while the LSN is below 2^47 (128 TiB of WAL).
const CDCIndexBits = 16

func checkCDC(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	if l, ok := attrs["tables"].([]any); ok {
		for _, v := range l {
			if s, ok := v.(string); ok {
				if _, err := parseTable(s); err != nil {
					errs = append(errs, stdlib.AttrError{Attr: "tables", Message: err.Error()})
				}
			}
		}
	}
	if n, ok := attrs["batch"].(int64); ok && n < 1 {
		errs = append(errs, stdlib.AttrError{Attr: "batch", Message: "batch must be at least 1"})
	}
	if d, ok := attrs["heartbeat"].(time.Duration); ok && d < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "heartbeat", Message: "heartbeat must not be negative"})
	}
	return errs
}

// cdcSource streams the changes of a publication from a logical
// replication slot.
type cdcSource struct {
	log          *slog.Logger
	dsn          string
	publication  string
	tables       []tableName
	slot         string
	batch        int
	heartbeat    time.Duration
	retryTimeout time.Duration
	stage        string
	task         int
	snapshot     bool         // snapshot = initial
	snap         *cdcSnapshot // the snapshot being read, nil when none

	identity string
	repl     *pgconn.PgConn
	tmap     *pgtype.Map
	rels     map[uint32]*pglogrepl.RelationMessage
	pks      map[string][]string // primary key columns by schema.table
	row      *types.Type         // the declared schema: the rows' columns and types; nil: every column
	skipTo   int64               // resumed: changes at or below this offset were delivered
	hasSkip  bool
	acked    pglogrepl.LSN // confirmed to the server: changes before it are not sent again
	received pglogrepl.LSN // last WAL position seen
	nextAck  time.Time     // when the next status update is due
	messages bool          // the server sends logical decoding messages (14 and later)

	// Quiet positions: a WAL position seen outside any transaction may be
	// confirmed once every change emitted before it is covered by a
	// completed checkpoint, so that the slot advances (and the server
	// releases WAL) while no captured change arrives.
	emitted   int64         // offset of the last change emitted
	done      int64         // greatest offset a completed checkpoint covers
	quietLSN  pglogrepl.LSN // a quiet position not yet confirmed
	quietNeed int64         // the offset done must reach to confirm quietLSN
	// snapPending holds the snapshot's tables (partitions) that no
	// completed checkpoint covers whole yet: while any is, no quiet
	// position is confirmed, so the slot stays at the consistent point the
	// snapshot's positions are tied to.
	snapPending map[string]int64 // partition → the offset a checkpoint must cover
	beat        *pgx.Conn        // the connection writing heartbeats
	nextBeat    time.Time        // when the next heartbeat is due
	lag         cdcLag

	// the transaction being received
	xid        uint32
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	index      int64
}

func newCDC(cfg stdlib.Config) (*cdcSource, error) {
	s := &cdcSource{
		log:          cfg.Logger,
		dsn:          cfg.String("dsn"),
		publication:  cfg.String("publication"),
		slot:         cfg.String("slot"),
		batch:        int(cfg.Int("batch")),
		heartbeat:    cfg.Duration("heartbeat"),
		retryTimeout: cfg.Duration(retry.Param.Name),
		stage:        cfg.Stage,
		task:         cfg.Task,
		snapshot:     cfg.String("snapshot") != "never",
	}
	if cfg.Schema != nil && cfg.Schema.Kind == types.Record {
		s.row = cfg.Schema
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if errs := checkCDC(cfg.Attrs); len(errs) > 0 {
		return nil, fmt.Errorf("postgres_cdc source: %s", errs[0].Message)
	}
	if s.dsn == "" || s.publication == "" || s.slot == "" {
		return nil, errors.New("postgres_cdc source: dsn, publication and slot must not be empty")
	}
	for _, t := range cfg.Strings("tables") {
		tn, err := parseTable(t)
		if err != nil {
			return nil, fmt.Errorf("postgres_cdc source: %w", err)
		}
		s.tables = append(s.tables, tn)
	}
	if s.batch < 1 {
		s.batch = 1
	}
	return s, nil
}

// Open checks the server's settings and the role's privilege, creates or
// checks the publication and the slot, and starts streaming from the
// slot's confirmed position, dropping what the resumed position covers.
func (s *cdcSource) Open(ctx context.Context, resume stdlib.Resumer) error {
	if s.task != 0 {
		return nil // one slot, one reader: other tasks stay idle
	}
	err := retry.Do(ctx, s.backoff(), transient, func() error { return s.prepare(ctx) })
	if err != nil {
		return fmt.Errorf("postgres_cdc source %q: %w", s.stage, err)
	}
	if resume != nil {
		if off, ok := resume.Resume(s.slot, s.identity); ok {
			s.skipTo, s.hasSkip = off, true
			s.emitted, s.done = off, off
		}
	}
	if s.snapshot {
		err := retry.Do(ctx, s.backoff(), transient, func() error { return s.planSnapshot(ctx, resume, s.hasSkip) })
		if err != nil {
			s.closeSnapshot()
			return fmt.Errorf("postgres_cdc source %q: %w", s.stage, err)
		}
		if s.snap != nil {
			return nil // streaming starts once the snapshot is read
		}
	}
	if err := retry.Do(ctx, s.backoff(), cdcTransient, func() error { return s.start(ctx) }); err != nil {
		return fmt.Errorf("postgres_cdc source %q: %w", s.stage, err)
	}
	return nil
}

func (s *cdcSource) backoff() *retry.Backoff {
	return retry.New(s.retryTimeout, s.log, "postgres_cdc source")
}

// prepare runs the checks and creations on an ordinary connection.
func (s *cdcSource) prepare(ctx context.Context) error {
	conn, err := connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var level string
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level'), current_setting('server_version_num')::int").Scan(&level, &version); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if err := checkWALLevel(level); err != nil {
		return err
	}
	s.messages = version >= 140000
	var role string
	var repl bool
	if err := conn.QueryRow(ctx, "SELECT rolname, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&role, &repl); err != nil {
		return fmt.Errorf("read the role's privileges: %w", err)
	}
	if err := checkReplication(role, repl); err != nil {
		return err
	}
	if err := s.publicationReady(ctx, conn); err != nil {
		return err
	}
	if err := s.slotReady(ctx, conn); err != nil {
		return err
	}
	if s.identity, err = slotIdentity(ctx, conn, s.slot); err != nil {
		return err
	}
	var confirmed, now string
	if err := conn.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn, '0/0')::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&confirmed, &now); err != nil {
		return fmt.Errorf("read replication slot %q: %w", s.slot, err)
	}
	if lsn, err := pglogrepl.ParseLSN(confirmed); err == nil && lsn > s.acked {
		s.acked = lsn
	}
	if lsn, err := pglogrepl.ParseLSN(now); err == nil {
		s.noteEnd(lsn)
	}
	s.noteAcked()
	return nil
}

// slotIdentity is the identity of the positions of slot: the server's
// system identifier, the database and the slot.
func slotIdentity(ctx context.Context, conn *pgx.Conn, slot string) (string, error) {
	var sys int64
	var db uint32
	if err := conn.QueryRow(ctx, "SELECT (SELECT system_identifier FROM pg_control_system()), (SELECT oid FROM pg_database WHERE datname = current_database())").Scan(&sys, &db); err != nil {
		return "", fmt.Errorf("read the system identifier: %w", err)
	}
	return fmt.Sprintf("system %d database %d slot %s", uint64(sys), db, slot), nil
}

// ReportPositions implements stdlib.SourcePositionReporter: the slot's
// confirmed flush LSN as the last position done (offset LSN <<
// CDCIndexBits: a resumed run streams the transaction committed there and
// after), none when the slot does not exist.
func (s *cdcSource) ReportPositions(ctx context.Context) (string, []stdlib.Position, error) {
	conn, err := connect(ctx, s.dsn)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var confirmed, now *string
	err = conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&confirmed, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("read replication slot %q: %w", s.slot, err)
	}
	if confirmed == nil {
		return "", nil, nil
	}
	lsn, err := pglogrepl.ParseLSN(*confirmed)
	if err != nil {
		return "", nil, err
	}
	id, err := slotIdentity(ctx, conn, s.slot)
	if err != nil {
		return "", nil, err
	}
	holder := fmt.Sprintf("replication slot %s, confirmed flush LSN %s", s.slot, lsn)
	if cur, err := pglogrepl.ParseLSN(deref(now)); err == nil && cur >= lsn {
		holder += fmt.Sprintf(", %d bytes of WAL behind", uint64(cur-lsn))
	}
	return holder, []stdlib.Position{{Source: s.stage, Partition: s.slot, Offset: int64(lsn) << CDCIndexBits, Identity: id}}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkWALLevel fails unless the server's wal_level is logical.
func checkWALLevel(level string) error {
	if level != "logical" {
		return fmt.Errorf("the server's wal_level is %q: change data capture needs wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart the server)", level)
	}
	return nil
}

// checkReplication fails unless role may replicate (REPLICATION or
// superuser).
func checkReplication(role string, repl bool) error {
	if !repl {
		return fmt.Errorf("role %q has no REPLICATION privilege: change data capture needs it (ALTER ROLE %s REPLICATION)", role, quote(role))
	}
	return nil
}

// publicationReady creates the publication for the tables when it does
// not exist, or checks that it holds them, and checks that every table it
// holds has a primary key or a replica identity.
func (s *cdcSource) publicationReady(ctx context.Context, conn *pgx.Conn) error {
	for i, t := range s.tables {
		var err error
		if s.tables[i], err = resolveSchema(ctx, conn, t); err != nil {
			return err
		}
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.publication).Scan(&exists); err != nil {
		return fmt.Errorf("read publication %q: %w", s.publication, err)
	}
	if !exists {
		if len(s.tables) == 0 {
			return fmt.Errorf("publication %q does not exist: list the tables to capture in tables to have it created", s.publication)
		}
		for _, t := range s.tables {
			if err := checkIdentity(ctx, conn, t); err != nil {
				return err
			}
		}
		names := make([]string, len(s.tables))
		for i, t := range s.tables {
			names[i] = t.sql()
		}
		if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+quote(s.publication)+" FOR TABLE "+strings.Join(names, ", ")); err != nil {
			return fmt.Errorf("create publication %q: %w", s.publication, err)
		}
		s.log.Info("postgres_cdc: created the publication", "publication", s.publication)
		return s.readKeys(ctx, conn, s.tables)
	}
	held, err := s.publicationTables(ctx, conn)
	if err != nil {
		return err
	}
	for _, t := range s.tables {
		if !slices.Contains(held, t) {
			return fmt.Errorf("publication %q does not hold table %q (ALTER PUBLICATION %s ADD TABLE %s)", s.publication, t.String(), quote(s.publication), t.sql())
		}
	}
	for _, t := range held {
		if err := checkIdentity(ctx, conn, t); err != nil {
			return err
		}
	}
	if err := s.checkRows(ctx, conn, held); err != nil {
		return err
	}
	return s.readKeys(ctx, conn, held)
}

// checkRows checks, with a declared schema, that every captured table has
// each column it declares, of its type (an optional one where the column
// may be null): the rows then hold those columns only.
func (s *cdcSource) checkRows(ctx context.Context, conn *pgx.Conn, tables []tableName) error {
	if s.row == nil {
		return nil
	}
	for _, t := range tables {
		cols, err := readColumns(ctx, conn, t)
		if err != nil {
			return err
		}
		if err := rowTypeFits(s.row, cols); err != nil {
			return fmt.Errorf("table %q does not fit the schema: %w", t.String(), err)
		}
	}
	return nil
}

// rowTypeFits reports the first field of row that no column of cols
// gives values of.
func rowTypeFits(row *types.Type, cols []column) error {
	for _, f := range row.Fields {
		i := slices.IndexFunc(cols, func(c column) bool { return c.Name == f.Name })
		if i < 0 {
			return fmt.Errorf("it has no column %q", f.Name)
		}
		ct := typeOfColumn(cols[i])
		if f.Type.Kind != types.Any && !types.Equal(ct.WithOptional(false), f.Type.WithOptional(false)) {
			return fmt.Errorf("column %q (%s) holds %s values, the schema declares %s", f.Name, cols[i].SQLType, ct.WithOptional(false), f.Type)
		}
		if cols[i].Nullable && !f.Type.Optional {
			return fmt.Errorf("column %q may be null: declare it %s", f.Name, f.Type.WithOptional(true))
		}
	}
	return nil
}

// keep drops from row the columns the declared schema does not name.
func (s *cdcSource) keep(row map[string]any) map[string]any {
	if s.row == nil || row == nil {
		return row
	}
	for k := range row {
		if s.row.Field(k) == nil {
			delete(row, k)
		}
	}
	return row
}

// publicationTables returns the tables the publication holds, in the
// order of their names.
func (s *cdcSource) publicationTables(ctx context.Context, conn *pgx.Conn) ([]tableName, error) {
	rows, err := conn.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2", s.publication)
	if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", s.publication, err)
	}
	held, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tableName, error) {
		var t tableName
		return t, r.Scan(&t.Schema, &t.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", s.publication, err)
	}
	return held, nil
}

// readKeys notes the primary key of every captured table.
func (s *cdcSource) readKeys(ctx context.Context, conn *pgx.Conn, tables []tableName) error {
	s.pks = map[string][]string{}
	for _, t := range tables {
		pk, err := primaryKey(ctx, conn, t)
		if err != nil {
			return err
		}
		s.pks[t.Schema+"."+t.Name] = pk
	}
	return nil
}

// checkIdentity fails when t does not exist or when its updates and
// deletes cannot be identified: no replica identity, or the default one
// without a primary key.
func checkIdentity(ctx context.Context, conn *pgx.Conn, t tableName) error {
	var ident string
	var pk bool
	err := conn.QueryRow(ctx, `SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).Scan(&ident, &pk)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("table %q does not exist", t.String())
	}
	if err != nil {
		return fmt.Errorf("read the replica identity of %q: %w", t.String(), err)
	}
	if ident == "n" || ident == "d" && !pk {
		return fmt.Errorf("table %q has no primary key and no replica identity: its updates and deletes cannot be captured (add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL)", t.String(), t.sql())
	}
	return nil
}

// slotReady creates the slot when missing, or checks it is a pgoutput
// slot of this database.
func (s *cdcSource) slotReady(ctx context.Context, conn *pgx.Conn) error {
	var plugin, db *string
	err := conn.QueryRow(ctx, "SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&plugin, &db)
	if err == nil {
		var cur string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&cur); err != nil {
			return err
		}
		switch {
		case plugin == nil:
			return fmt.Errorf("replication slot %q is a physical slot, not a logical one", s.slot)
		case *plugin != "pgoutput":
			return fmt.Errorf("replication slot %q uses plugin %q, not pgoutput", s.slot, *plugin)
		case db == nil || *db != cur:
			return fmt.Errorf("replication slot %q belongs to another database", s.slot)
		}
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read replication slot %q: %w", s.slot, err)
	}
	var used, max int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int").Scan(&used, &max); err != nil {
		return fmt.Errorf("read max_replication_slots: %w", err)
	}
	if used >= max {
		return fmt.Errorf("cannot create replication slot %q: all max_replication_slots = %d slots are in use (raise max_replication_slots and restart the server, or drop an unused slot)", s.slot, max)
	}
	if s.snapshot {
		return s.createSlotSnapshot(ctx)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s.slot); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42710" { // created meanwhile
			return nil
		}
		return fmt.Errorf("create replication slot %q: %w", s.slot, err)
	}
	s.log.Info("postgres_cdc: created the replication slot", "slot", s.slot)
	return nil
}

// cdcTransient is transient, or the slot still in use by the connection
// of a process that just ended (the server notices it shortly).
func cdcTransient(err error) bool {
	var pe *pgconn.PgError
	return transient(err) || errors.As(err, &pe) && pe.Code == "55006" // object in use
}

// start opens the replication connection and starts streaming from the
// slot's confirmed position.
func (s *cdcSource) start(ctx context.Context) error {
	conn, err := s.replConn(ctx)
	if err != nil {
		return err
	}
	args := []string{"proto_version '1'", "publication_names '" + strings.ReplaceAll(s.publication, "'", "''") + "'"}
	if s.messages {
		args = append(args, "messages 'true'") // heartbeats arrive with their WAL position
	}
	err = pglogrepl.StartReplication(ctx, conn, s.slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("start replication from slot %q: %w", s.slot, err)
	}
	s.repl = conn
	s.tmap = pgtype.NewMap()
	s.rels = map[uint32]*pglogrepl.RelationMessage{}
	s.nextAck = time.Now().Add(10 * time.Second)
	return nil
}

// Read returns the changes received, waiting at most about a second so
// that the executor can commit completed checkpoints in between.
func (s *cdcSource) Read(ctx context.Context) ([]stdlib.Record, error) {
	if s.task != 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.snap != nil {
		if recs, err := s.snapshotRead(ctx); err != nil || len(recs) > 0 {
			return recs, err
		}
	}
	b := s.backoff()
	for {
		recs, err := s.receive(ctx)
		if err == nil || len(recs) > 0 {
			if err != nil { // keep what arrived; the next Read reconnects
				s.dropRepl()
			}
			return recs, nil
		}
		if !cdcTransient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("postgres_cdc source %q: %w", s.stage, err)
		}
		s.dropRepl()
		if werr := b.Wait(ctx, err); werr != nil {
			return nil, fmt.Errorf("postgres_cdc source %q: %w", s.stage, werr)
		}
		if err := s.start(ctx); err != nil && !cdcTransient(err) {
			return nil, fmt.Errorf("postgres_cdc source %q: %w", s.stage, err)
		}
	}
}

// receive reads replication messages until a batch is full, nothing came
// for a short while after changes, or a second passed.
func (s *cdcSource) receive(ctx context.Context) ([]stdlib.Record, error) {
	if s.repl == nil {
		if err := s.start(ctx); err != nil {
			return nil, err
		}
	}
	var recs []stdlib.Record
	until := time.Now().Add(time.Second)
	for len(recs) < s.batch {
		deadline := until
		if len(recs) > 0 && s.xid == 0 {
			deadline = time.Now().Add(5 * time.Millisecond)
		}
		if time.Now().After(s.nextAck) {
			if err := s.sendStatus(ctx); err != nil {
				return recs, err
			}
		}
		if s.heartbeat > 0 && time.Now().After(s.nextBeat) {
			s.writeHeartbeat(ctx)
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := s.repl.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				if len(recs) > 0 || time.Now().After(until) {
					return recs, nil
				}
				continue
			}
			return recs, err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			return recs, pgconn.ErrorResponseToPgError(m)
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return recs, fmt.Errorf("parse keepalive: %w", err)
				}
				if ka.ReplyRequested {
					s.nextAck = time.Time{}
				}
				s.noteEnd(ka.ServerWALEnd)
				if s.xid == 0 && len(recs) == 0 {
					s.quiet(ka.ServerWALEnd)
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return recs, fmt.Errorf("parse xlog data: %w", err)
				}
				if xld.WALStart > s.received {
					s.received = xld.WALStart
				}
				s.noteEnd(xld.ServerWALEnd)
				if recs, err = s.decode(xld.WALData, recs); err != nil {
					return recs, err
				}
			}
		}
	}
	return recs, nil
}

// sendStatus tells the server what is confirmed: only what a completed
// checkpoint covers (Commit), never merely what was received.
func (s *cdcSource) sendStatus(ctx context.Context) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.acked, WALFlushPosition: s.acked, WALApplyPosition: s.acked})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	s.nextAck = time.Now().Add(10 * time.Second)
	return nil
}

// decode handles one pgoutput message, appending the change it carries.
func (s *cdcSource) decode(data []byte, recs []stdlib.Record) ([]stdlib.Record, error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return recs, fmt.Errorf("parse pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		s.rels[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		s.xid, s.commitLSN, s.commitTime, s.index = m.Xid, m.FinalLSN, m.CommitTime, 0
	case *pglogrepl.CommitMessage:
		s.xid = 0
	case *pglogrepl.LogicalDecodingMessage:
		if !m.Transactional && s.xid == 0 && len(recs) == 0 {
			s.quiet(m.LSN)
		}
	case *pglogrepl.InsertMessage:
		return s.change(recs, "insert", m.RelationID, false, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return s.change(recs, "update", m.RelationID, m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return s.change(recs, "delete", m.RelationID, m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey, m.OldTuple, nil)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if recs, err = s.change(recs, "truncate", id, false, nil, nil); err != nil {
				return recs, err
			}
		}
	}
	return recs, nil
}

// change appends the record of one change, unless the resumed position
// already covers it.
// keyOnly says before holds the replica identity's columns only.
func (s *cdcSource) change(recs []stdlib.Record, op string, relID uint32, keyOnly bool, before, after *pglogrepl.TupleData) ([]stdlib.Record, error) {
	rel, ok := s.rels[relID]
	if !ok {
		return recs, fmt.Errorf("change of relation %d before its description", relID)
	}
	s.index++
	if s.index >= 1<<CDCIndexBits {
		return recs, fmt.Errorf("transaction %d holds more than %d changes, the most a transaction may hold", s.xid, 1<<CDCIndexBits-1)
	}
	off := int64(s.commitLSN)<<CDCIndexBits | s.index
	if s.hasSkip && off <= s.skipTo {
		return recs, nil
	}
	s.emitted = off
	r := stdlib.Record{Partition: -1, Time: s.commitTime,
		Pos: stdlib.Position{Source: s.stage, Partition: s.slot, Offset: off, Identity: s.identity}}
	var errs []string
	pk := s.pks[rel.Namespace+"."+rel.RelationName]
	b, key := s.tuple(rel, pk, keyOnly, before, nil, &errs)
	a, akey := s.tuple(rel, pk, false, after, before, &errs)
	if akey != nil {
		key = akey
	}
	v := map[string]any{
		"op": op, "table": rel.Namespace + "." + rel.RelationName, "xid": int64(s.xid),
		"lsn": s.commitLSN.String(), "commit_time": s.commitTime, "before": nil, "after": nil,
	}
	if key != nil {
		r.Key = key
	}
	if b != nil {
		v["before"] = s.keep(b)
	}
	if a != nil {
		v["after"] = s.keep(a)
	}
	r.Value = v
	if len(errs) > 0 {
		r.Err = fmt.Errorf("table %s.%s: %s", rel.Namespace, rel.RelationName, strings.Join(errs, "; "))
	}
	return append(recs, r), nil
}

// tuple converts a tuple to a row (nil for none) and returns the values of
// its key columns: those of pk, the table's primary key, or without one
// the replica identity's. With keyOnly, the tuple holds the replica
// identity's columns only (the others are not in the row). An unchanged TOAST value the server did not send is
// taken from old when that holds it (REPLICA IDENTITY FULL); otherwise it
// is reported in errs, never turned into null.
func (s *cdcSource) tuple(rel *pglogrepl.RelationMessage, pk []string, keyOnly bool, t, old *pglogrepl.TupleData, errs *[]string) (map[string]any, map[string]any) {
	if t == nil {
		return nil, nil
	}
	row := make(map[string]any, len(t.Columns))
	var key map[string]any
	for i, c := range t.Columns {
		if i >= len(rel.Columns) {
			break
		}
		col := rel.Columns[i]
		if keyOnly && col.Flags&1 == 0 {
			continue
		}
		var v any
		switch c.DataType {
		case 'n':
			v = nil
		case 'u':
			if old != nil && i < len(old.Columns) && (old.Columns[i].DataType == 't' || old.Columns[i].DataType == 'b') {
				c = old.Columns[i]
			} else {
				*errs = append(*errs, fmt.Sprintf("column %q is an unchanged TOAST value the server did not send (set REPLICA IDENTITY FULL on the table to have it)", col.Name))
				continue
			}
			fallthrough
		default:
			var err error
			if v, err = s.value(col, c.Data); err != nil {
				*errs = append(*errs, fmt.Sprintf("column %q: %v", col.Name, err))
				continue
			}
		}
		row[col.Name] = v
		if len(pk) == 0 && col.Flags&1 != 0 || slices.Contains(pk, col.Name) {
			if key == nil {
				key = map[string]any{}
			}
			key[col.Name] = v
		}
	}
	return row, key
}

// value decodes a column's text value as its type gives.
func (s *cdcSource) value(col *pglogrepl.RelationMessageColumn, data []byte) (any, error) {
	dt, ok := s.tmap.TypeForOID(col.DataType)
	if !ok {
		return string(data), nil // an enum, a domain, a type of an extension: its text
	}
	c := &column{Name: col.Name, Type: dt.Name}
	if classOf(dt.Name) == sqlcommon.ClassJSON {
		return decodeJSON(data, false)
	}
	v, err := dt.Codec.DecodeValue(s.tmap, col.DataType, pgtype.TextFormatCode, data)
	if err != nil {
		return nil, err
	}
	return fromColumn(c, v, nil)
}

// Commit confirms to the server the commit LSN of the last change a
// completed checkpoint covers: the slot then keeps what follows only, and
// a restart streams again from that transaction on (its changes already
// delivered are dropped by their offsets).
func (s *cdcSource) Commit(ctx context.Context, positions []stdlib.Position) error {
	for _, p := range positions {
		if need, ok := s.snapPending[p.Partition]; ok && p.Source == s.stage && p.Offset >= need {
			delete(s.snapPending, p.Partition)
		}
		if p.Source != s.stage || p.Partition != s.slot || !stdlib.SameIdentity(p.Identity, s.identity) {
			continue
		}
		if p.Offset > s.done {
			s.done = p.Offset
		}
		if lsn := pglogrepl.LSN(p.Offset >> CDCIndexBits); lsn > s.acked {
			s.acked = lsn
			s.nextAck = time.Time{}
		}
	}
	if s.quietLSN > s.acked && s.done >= s.quietNeed && len(s.snapPending) == 0 {
		s.acked, s.quietLSN = s.quietLSN, 0
		s.nextAck = time.Time{}
	}
	s.noteAcked()
	if s.repl != nil && s.nextAck.IsZero() {
		if err := s.sendStatus(ctx); err != nil {
			s.dropRepl() // the next Read reconnects and confirms it then
		}
	}
	return nil
}

// quiet notes lsn, a WAL position seen outside any transaction with no
// change received since the last Read: every transaction committed before
// it has been received. It is confirmed at once when every change emitted
// is covered by a completed checkpoint, or else by the Commit that covers
// them (a later quiet position replaces an earlier one still waiting).
func (s *cdcSource) quiet(lsn pglogrepl.LSN) {
	if lsn <= s.acked {
		return
	}
	if s.done >= s.emitted && len(s.snapPending) == 0 {
		s.acked, s.quietLSN = lsn, 0
		s.nextAck = time.Time{}
		s.noteAcked()
		return
	}
	s.quietLSN, s.quietNeed = lsn, s.emitted
}

// writeHeartbeat writes a non-transactional logical decoding message to
// the WAL, so that a quiet position follows the changes of other tables
// and databases. A failure is logged, never fatal: the next one retries.
func (s *cdcSource) writeHeartbeat(ctx context.Context) {
	s.nextBeat = time.Now().Add(s.heartbeat)
	if s.beat == nil {
		c, err := connect(ctx, s.dsn)
		if err != nil {
			s.log.Warn("postgres_cdc: heartbeat: connect", "err", err)
			return
		}
		s.beat = c
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var at string
	if err := s.beat.QueryRow(bctx, "SELECT pg_logical_emit_message(false, 'pipe_heartbeat', $1::text)::text", s.slot).Scan(&at); err != nil {
		s.log.Warn("postgres_cdc: heartbeat", "err", err)
		s.beat.Close(context.WithoutCancel(ctx))
		s.beat = nil
		return
	}
	if lsn, err := pglogrepl.ParseLSN(at); err == nil {
		s.noteEnd(lsn)
	}
}

func (s *cdcSource) dropRepl() {
	if s.repl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.repl.Close(ctx)
		cancel()
		s.repl = nil
	}
}

// Close disconnects; the slot and the publication stay.
func (s *cdcSource) Close(ctx context.Context) error {
	s.dropRepl()
	s.closeSnapshot()
	if s.beat != nil {
		s.beat.Close(context.WithoutCancel(ctx))
		s.beat = nil
	}
	return nil
}
