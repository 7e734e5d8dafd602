package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the postgres sink.
var SinkSpec = &stdlib.Spec{
	Kind:    stdlib.SinkKind,
	Name:    "postgres",
	Summary: "write records into a PostgreSQL table (insert, upsert or delete), exactly once",
	Params: []stdlib.Param{
		dsnParam,
		{Name: "table", Type: stdlib.String, Required: true, Doc: "target table, optionally schema-qualified"},
		{Name: "mode", Type: stdlib.Enum("insert", "upsert", "delete"), Default: stdlib.Ident("insert"),
			Doc: "insert rows; upsert (insert or update) by key; delete by key"},
		{Name: "key", Type: stdlib.ListOf(stdlib.String),
			Doc: "key columns for upsert and delete (default: the table's primary key)"},
		{Name: "batch", Type: stdlib.Int, Default: int64(10000),
			Doc: "rows per statement; at_least_once also commits every batch rows"},
		{Name: "flush", Type: stdlib.Duration, Default: time.Second,
			Doc: "at_least_once: commit at least this often while records arrive"},
		{Name: "create_table", Type: stdlib.Bool, Default: false,
			Doc: "create the table from the record type when it does not exist"},
		{Name: "evolve", Type: stdlib.Enum("none", "add_columns"), Default: stdlib.Ident("none"),
			Doc: "add_columns: add a nullable column for each new field"},
		retry.Param,
		{Name: "offsets_table", Type: stdlib.String, Default: "pipe_offsets",
			Doc: "exactly_once: table holding the positions committed with the data"},
		{Name: "schema", Type: stdlib.Schema, Doc: "asserts the shape of the records written"},
	},
	Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Schema:   true,
	Check:    checkSink,
	NewSink:  func(cfg stdlib.Config) (stdlib.Sink, error) { return newSink(cfg) },
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	if s, ok := attrs["table"].(string); ok {
		if _, err := parseTable(s); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "table", Message: err.Error()})
		}
	}
	if s, ok := attrs["offsets_table"].(string); ok {
		if _, err := parseTable(s); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "offsets_table", Message: err.Error()})
		}
	}
	if n, ok := attrs["batch"].(int64); ok && n <= 0 {
		errs = append(errs, stdlib.AttrError{Attr: "batch", Message: "batch must be positive"})
	}
	if d, ok := attrs["flush"].(time.Duration); ok && d < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "flush", Message: "flush must not be negative"})
	}
	errs = append(errs, retry.Check(attrs)...)
	if l, ok := attrs["key"].([]any); ok && len(l) == 0 {
		errs = append(errs, stdlib.AttrError{Attr: "key", Message: "key must name at least one column"})
	}
	return errs
}

type opKind int

const (
	opInsert opKind = iota
	opUpsert
	opDelete
	opDDL
)

// step is one unit of work done in the open transaction, kept so that it can
// be replayed in a new transaction after a connection loss.
type step struct {
	op   opKind
	cols []string // insert, upsert: the columns written; delete: the key columns
	rows [][]any
	idx  []int  // index of each row in the Write batch that brought it
	ddl  string // opDDL
}

type sink struct {
	log          *slog.Logger
	dsn          string
	table        tableName
	offsets      tableName
	mode         opKind // opInsert, opUpsert or opDelete
	keys         []string
	batch        int
	flushEvery   time.Duration
	create       bool
	evolve       bool
	retryTimeout time.Duration
	exactly      bool
	pipeline     string
	stage        string
	tasks        int
	sinkID       string      // the task's name in the offsets table
	rtype        *types.Type // record type, nil if unknown

	target     uint32 // OID of the table the positions are held for
	hasOffsets bool   // the offsets table exists (StoredPositions, SetPositions)
	stale      bool   // the offsets table holds positions of another table

	conn         *pgx.Conn
	backendStart time.Time // of conn's server process
	tx           pgx.Tx
	txStart      time.Time
	txRows       int
	done         []step // steps of the open transaction
	cols         map[string]*column
	order        []string // table columns in table order

	failed   error     // a failure that left the transaction in doubt
	writes   uint64    // Write calls so far
	buf      rowBuffer // rows not yet sent
	coalesce bool      // rows of several Writes may share a statement
}

func newSink(cfg stdlib.Config) (*sink, error) {
	s := &sink{
		log:          cfg.Logger,
		dsn:          cfg.String("dsn"),
		batch:        int(cfg.Int("batch")),
		flushEvery:   cfg.Duration("flush"),
		create:       cfg.Bool("create_table"),
		evolve:       cfg.String("evolve") == "add_columns",
		retryTimeout: cfg.Duration(retry.Param.Name),
		exactly:      cfg.Delivery == stdlib.ExactlyOnce,
		pipeline:     cfg.Pipeline,
		stage:        cfg.Stage,
		tasks:        cfg.Tasks,
		sinkID:       taskSinkID(cfg.Stage, cfg.Task, cfg.Tasks),
		keys:         cfg.Strings("key"),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.dsn == "" {
		return nil, errors.New("postgres sink: dsn is empty")
	}
	var err error
	if s.table, err = parseTable(cfg.String("table")); err != nil {
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	if s.offsets, err = parseTable(cfg.String("offsets_table")); err != nil {
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	switch cfg.String("mode") {
	case "insert":
		s.mode = opInsert
	case "upsert":
		s.mode = opUpsert
	case "delete":
		s.mode = opDelete
	default:
		return nil, fmt.Errorf("postgres sink: unknown mode %q", cfg.String("mode"))
	}
	s.rtype = cfg.Schema
	if s.rtype == nil {
		s.rtype = cfg.Input
	}
	if s.rtype != nil && s.rtype.Kind != types.Record {
		if s.rtype.Kind != types.Any {
			return nil, fmt.Errorf("postgres sink: records of type %s cannot be written to a table: want a record", s.rtype)
		}
		s.rtype = nil
	}
	return s, nil
}

// backoff paces the retries of one operation.
func (s *sink) backoff() *retry.Backoff { return retry.New(s.retryTimeout, s.log, "postgres sink") }

// Open connects, prepares the table and returns the positions held.
func (s *sink) Open(ctx context.Context) ([]stdlib.Position, error) {
	s.failed, s.buf, s.done, s.tx, s.txRows = nil, rowBuffer{}, nil, nil, 0
	b := s.backoff()
	for {
		err := s.dial(ctx)
		var held []stdlib.Position
		if err == nil {
			held, err = s.prepare(ctx)
		}
		if err == nil {
			return held, nil
		}
		s.reset()
		s.cols = nil
		if !transient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("postgres sink %q: %w", s.sinkID, err)
		}
		if werr := b.Wait(ctx, err); werr != nil {
			return nil, fmt.Errorf("postgres sink %q: %w", s.sinkID, werr)
		}
	}
}

func (s *sink) prepare(ctx context.Context) ([]stdlib.Position, error) {
	var err error
	if s.table, err = resolveSchema(ctx, s.conn, s.table); err != nil {
		return nil, err
	}
	if s.offsets, err = resolveSchema(ctx, s.conn, s.offsets); err != nil {
		return nil, err
	}
	cols, err := readColumns(ctx, s.conn, s.table)
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		if !s.create {
			return nil, fmt.Errorf("table %q does not exist (set create_table = true to create it)", s.table.String())
		}
		if err := s.createTable(ctx); err != nil {
			return nil, err
		}
		if cols, err = readColumns(ctx, s.conn, s.table); err != nil {
			return nil, err
		}
	}
	s.setColumns(cols)
	if s.mode != opInsert && len(s.keys) == 0 {
		pk, err := primaryKey(ctx, s.conn, s.table)
		if err != nil {
			return nil, err
		}
		if len(pk) == 0 {
			return nil, fmt.Errorf("mode %s needs key columns: set key = [...] or give table %q a primary key", s.modeName(), s.table.String())
		}
		s.keys = pk
	}
	for _, k := range s.keys {
		if s.cols[k] == nil {
			return nil, fmt.Errorf("key column %q is not a column of table %q", k, s.table.String())
		}
	}
	uniques, err := s.uniqueIndexes(ctx)
	if err != nil {
		return nil, err
	}
	if s.mode == opUpsert && !slices.Contains(uniques, s.keyList()) {
		return nil, fmt.Errorf("mode upsert needs a primary key or unique index on exactly the key columns (%s) of table %q",
			strings.Join(s.keys, ", "), s.table.String())
	}
	if s.rtype != nil {
		if err := s.checkType(ctx); err != nil {
			return nil, err
		}
	}
	why, err := s.bufferable(ctx)
	if err != nil {
		return nil, err
	}
	s.coalesce = why == ""
	if !s.coalesce {
		s.log.Info("postgres: rows are sent at the end of every Write", "table", s.table.String(), "because", why)
	}
	if !s.exactly {
		return nil, nil
	}
	if err := s.createOffsets(ctx, s.conn); err != nil {
		return nil, err
	}
	if s.target, err = tableOID(ctx, s.conn, s.table); err != nil {
		return nil, err
	}
	return s.readHeld(ctx)
}

// bufferable tells why rows of several Writes may not share a statement,
// or "" if they may: the table has nothing but column types and NOT NULL
// (which convert checks before sending) that could make the server reject a
// row; a numeric(p, s) column (overflow, infinities) or a column of another
// type (enum labels, inet, arrays, ...) is checked by the server only. Otherwise a rejected row must be found while the Write that brought
// it is still running.
func (s *sink) bufferable(ctx context.Context) (string, error) {
	var why string
	err := s.conn.QueryRow(ctx, `
WITH rel AS (SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2)
SELECT CASE
  WHEN (SELECT relkind FROM rel) <> 'r' THEN 'not a plain table'
  WHEN EXISTS (SELECT 1 FROM pg_constraint k, rel WHERE k.conrelid = rel.oid AND k.contype IN ('c', 'f', 'x', 't'))
    THEN 'check, foreign key or exclusion constraints'
  WHEN EXISTS (SELECT 1 FROM pg_constraint k, rel WHERE k.confrelid = rel.oid) THEN 'referenced by foreign keys'
  WHEN EXISTS (SELECT 1 FROM pg_index i, rel WHERE i.indrelid = rel.oid AND i.indisunique
               AND (i.indpred IS NOT NULL OR i.indexprs IS NOT NULL)) THEN 'partial or expression unique indexes'
  WHEN EXISTS (SELECT 1 FROM pg_trigger g, rel WHERE g.tgrelid = rel.oid AND NOT g.tgisinternal) THEN 'triggers'
  WHEN EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid, rel
               WHERE a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'd') THEN 'domain types'
  WHEN EXISTS (SELECT 1 FROM rel, pg_class c WHERE c.oid = rel.oid AND c.relrowsecurity) THEN 'row level security'
  ELSE '' END`,
		s.table.Schema, s.table.Name).Scan(&why)
	if err != nil {
		return "", fmt.Errorf("read constraints of %q: %w", s.table.String(), err)
	}
	if why != "" {
		return why, nil
	}
	for _, name := range s.order {
		if c := s.cols[name]; c.Class == classOther || c.Class == classNumeric && c.SQLType != c.BaseType {
			return fmt.Sprintf("column %q of type %s takes values only the server checks", c.Name, c.SQLType), nil
		}
	}
	uniques, err := s.uniqueIndexes(ctx)
	if err != nil {
		return "", err
	}
	for _, u := range uniques {
		if s.mode == opInsert {
			return "unique indexes in insert mode", nil
		}
		if u != s.keyList() {
			return "unique indexes other than the key", nil
		}
	}
	return "", nil
}

// uniqueIndexes returns the column lists of the table's unique indexes,
// each sorted and comma-joined.
func (s *sink) uniqueIndexes(ctx context.Context) ([]string, error) {
	var uniques []string
	if err := s.conn.QueryRow(ctx, `
SELECT COALESCE(array_agg(array_to_string(ARRAY(
    SELECT a.attname FROM unnest(i.indkey) k(n) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
    ORDER BY a.attname), ',')), '{}')
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL`, s.table.Schema, s.table.Name).Scan(&uniques); err != nil {
		return nil, fmt.Errorf("read unique indexes of %q: %w", s.table.String(), err)
	}
	return uniques, nil
}

// keyList returns the key columns sorted and comma-joined.
func (s *sink) keyList() string {
	keys := slices.Clone(s.keys)
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

func (s *sink) modeName() string {
	return [...]string{"insert", "upsert", "delete"}[s.mode]
}

func (s *sink) setColumns(cols []column) {
	s.cols = make(map[string]*column, len(cols))
	s.order = s.order[:0]
	for i := range cols {
		s.cols[cols[i].Name] = &cols[i]
		s.order = append(s.order, cols[i].Name)
	}
}

// createTable creates the table (and its schema) from the record type. An
// exactly-once sink holds nothing of a table it creates: in the same
// transaction it forgets what every task of the stage held for the table's
// previous incarnation (or for the table `table` named before).
func (s *sink) createTable(ctx context.Context) error {
	if s.rtype == nil || len(s.rtype.Fields) == 0 {
		return fmt.Errorf("create_table needs the record type: declare schema = ... on sink %q", s.sinkID)
	}
	var defs []string
	for _, f := range s.rtype.Fields {
		if f.Name == "__op" {
			continue
		}
		d := quote(f.Name) + " " + sqlTypeOf(f.Type)
		defs = append(defs, d)
	}
	for _, k := range s.keys {
		if s.rtype.Field(k) == nil {
			return fmt.Errorf("key column %q is not a field of the records (%s)", k, s.rtype)
		}
	}
	if len(s.keys) > 0 {
		ks := make([]string, len(s.keys))
		for i, k := range s.keys {
			ks[i] = quote(k)
		}
		defs = append(defs, "PRIMARY KEY ("+strings.Join(ks, ", ")+")")
	}
	if _, err := s.conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quote(s.table.Schema)); err != nil && !alreadyExists(err) {
		return fmt.Errorf("create schema %q: %w", s.table.Schema, err)
	}
	if s.exactly {
		if err := s.createOffsets(ctx, s.conn); err != nil {
			return err
		}
	}
	var forgot int64
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TABLE "+s.table.sql()+" (\n  "+strings.Join(defs, ",\n  ")+"\n)"); err != nil {
			return err
		}
		if !s.exactly {
			return nil
		}
		tag, err := tx.Exec(ctx, "DELETE FROM "+s.offsets.sql()+" "+forgetSQL, s.pipeline, s.stage)
		forgot = tag.RowsAffected()
		return err
	})
	if alreadyExists(err) {
		return nil // another task created it meanwhile
	}
	if err != nil {
		return fmt.Errorf("create table %q: %w", s.table.String(), err)
	}
	s.log.Info("postgres: created table", "table", s.table.String(), "positions_forgotten", forgot)
	return nil
}

// alreadyExists reports the error of a concurrent CREATE ... IF NOT EXISTS.
func alreadyExists(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P07" || pe.Code == "23505" || pe.Code == "42P06")
}

// checkType checks the record type against the table's columns, adding
// columns for new fields when evolve = add_columns.
func (s *sink) checkType(ctx context.Context) error {
	var problems []string
	var add []string
	for _, f := range s.rtype.Fields {
		if f.Name == "__op" {
			continue
		}
		c := s.cols[f.Name]
		if c == nil {
			if s.evolve {
				add = append(add, "ADD COLUMN IF NOT EXISTS "+quote(f.Name)+" "+sqlTypeOf(f.Type))
				continue
			}
			problems = append(problems, fmt.Sprintf("field %q has no column in table %q (add the column or set evolve = add_columns)", f.Name, s.table.String()))
			continue
		}
		if err := compatible(f.Type, *c); err != nil {
			problems = append(problems, fmt.Sprintf("field %q (%s) does not fit column %q (%s) of table %q: %v",
				f.Name, f.Type, c.Name, c.SQLType, s.table.String(), err))
			continue
		}
		if f.Type.Optional && !c.Nullable && !c.HasDefault && !slices.Contains(s.keys, f.Name) {
			s.log.Warn("postgres: optional field feeds a NOT NULL column; null values will be rejected",
				"field", f.Name, "column", c.Name)
		}
	}
	if s.mode != opDelete {
		for _, name := range s.order {
			c := s.cols[name]
			if !c.Nullable && !c.HasDefault && s.rtype.Field(name) == nil {
				problems = append(problems, fmt.Sprintf("column %q of table %q is NOT NULL without a default, and the records have no field %q",
					name, s.table.String(), name))
			}
		}
	}
	for _, k := range s.keys {
		if s.rtype.Field(k) == nil {
			problems = append(problems, fmt.Sprintf("key column %q is not a field of the records (%s)", k, s.rtype))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	if len(add) == 0 {
		return nil
	}
	if _, err := s.conn.Exec(ctx, "ALTER TABLE "+s.table.sql()+" "+strings.Join(add, ", ")); err != nil {
		return fmt.Errorf("evolve table %q: %w", s.table.String(), err)
	}
	s.log.Info("postgres: added columns", "table", s.table.String(), "count", len(add))
	cols, err := readColumns(ctx, s.conn, s.table)
	if err != nil {
		return err
	}
	s.setColumns(cols)
	return nil
}

// Write converts the batch and buffers its rows. The buffer goes to the
// server when it holds batch rows or is older than flush, or at the end of
// every Write when the table has constraints only the server can check
// (see [sink.bufferable]): then a row the server rejects is still reported
// against the Write that brought it.
//
// A failure other than rejected records leaves the open transaction in an
// unknown state (rows of this and earlier Writes may or may not be in it):
// the sink then refuses every further Write and Checkpoint, so that the
// pipeline restarts from its last checkpoint rather than commit a partial
// transaction.
func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	if err := s.usable(); err != nil {
		return err
	}
	err := s.write(ctx, batch)
	if err != nil && !errors.As(err, new(stdlib.RecordErrors)) {
		s.failed = err
	}
	return err
}

// usable reports why the sink cannot take Write or Checkpoint calls.
func (s *sink) usable() error {
	if s.cols == nil {
		return fmt.Errorf("postgres sink %q: not open", s.sinkID)
	}
	if s.failed != nil {
		return fmt.Errorf("postgres sink %q: failed earlier, a restart is needed: %w", s.sinkID, s.failed)
	}
	return nil
}

func (s *sink) write(ctx context.Context, batch []stdlib.Record) error {
	s.writes++
	if s.evolve {
		if err := s.evolveFor(ctx, batch); err != nil {
			return err
		}
	}
	items, cols, rejected := s.convert(batch)
	if len(s.buf.items) > 0 && !slices.Equal(cols, s.buf.cols) {
		rerrs, err := s.flush(ctx)
		if err != nil {
			return err
		}
		rejected = append(rejected, rerrs...)
	}
	s.buffer(items, cols)
	if len(s.buf.items) > 0 && (!s.coalesce || len(s.buf.items) >= s.batch || time.Since(s.buf.since) >= s.flushEvery) {
		rerrs, err := s.flush(ctx)
		if err != nil {
			return err
		}
		rejected = append(rejected, rerrs...)
	}
	if !s.exactly && s.tx != nil && (s.txRows >= s.batch || time.Since(s.txStart) >= s.flushEvery) {
		if err := s.commit(ctx, nil); err != nil {
			return fmt.Errorf("postgres sink %q: %w", s.sinkID, err)
		}
	}
	if len(rejected) > 0 {
		slices.SortFunc(rejected, func(a, b stdlib.RecordError) int { return a.Index - b.Index })
		return rejected
	}
	return nil
}

// item is one converted record.
type item struct {
	del   bool   // delete the key (else write the row)
	row   []any  // the row, or the key values when del
	key   string // upsert, delete: the key, encoded
	write uint64 // the Write that brought it
	idx   int    // its index in that Write's batch
	pos   stdlib.Position
}

// rowBuffer holds the rows not yet sent.
type rowBuffer struct {
	cols  []string // columns of every buffered row
	items []item
	last  map[string]int // upsert, delete: key -> the item that counts
	since time.Time      // when the oldest item came
}

func (s *sink) buffer(items []item, cols []string) {
	if len(items) == 0 {
		return
	}
	if len(s.buf.items) == 0 {
		s.buf.cols = cols
		s.buf.since = time.Now()
		if s.mode != opInsert {
			s.buf.last = make(map[string]int, len(items))
		}
	}
	for _, it := range items {
		s.buf.items = append(s.buf.items, it)
		if s.mode != opInsert {
			s.buf.last[it.key] = len(s.buf.items) - 1
		}
	}
}

// flush sends the buffered rows. It returns the rejection of rows of the
// current Write; the rejection of a row of an earlier Write fails the call.
func (s *sink) flush(ctx context.Context) (stdlib.RecordErrors, error) {
	buf := s.buf
	s.buf = rowBuffer{}
	var keep []bool // upsert, delete: only the last item of a key counts
	if buf.last != nil {
		keep = make([]bool, len(buf.items))
		for _, n := range buf.last {
			keep[n] = true
		}
	}
	up := step{op: s.mode, cols: buf.cols}
	del := step{op: opDelete, cols: s.keys}
	for n, it := range buf.items {
		if keep != nil && !keep[n] {
			continue
		}
		if it.del {
			del.rows = append(del.rows, it.row)
			del.idx = append(del.idx, n)
		} else {
			up.rows = append(up.rows, it.row)
			up.idx = append(up.idx, n)
		}
	}
	var steps []step
	if len(up.rows) > 0 && s.mode != opDelete {
		steps = append(steps, up)
	}
	if len(del.rows) > 0 {
		steps = append(steps, del)
	}
	var rejected stdlib.RecordErrors
	var late []string
	for _, st := range steps {
		for start := 0; start < len(st.rows); start += s.batch {
			end := min(start+s.batch, len(st.rows))
			chunk := step{op: st.op, cols: st.cols, rows: st.rows[start:end], idx: st.idx[start:end]}
			rerrs, err := s.apply(ctx, chunk)
			if err != nil {
				return nil, fmt.Errorf("postgres sink %q: %w", s.sinkID, err)
			}
			for _, re := range rerrs {
				it := buf.items[re.Index]
				if it.write == s.writes {
					rejected = append(rejected, stdlib.RecordError{Index: it.idx, Err: re.Err})
				} else {
					late = append(late, fmt.Sprintf("record at %s: %v", it.pos, re.Err))
				}
			}
		}
	}
	if len(late) > 0 {
		return nil, fmt.Errorf("postgres sink %q: %d buffered records rejected by the database: %s",
			s.sinkID, len(late), strings.Join(late, "; "))
	}
	return rejected, nil
}

// isDelete reports whether r deletes its key (in upsert mode).
func isDelete(r *stdlib.Record) bool {
	if r.Value == nil {
		return true
	}
	m, ok := r.Value.(map[string]any)
	if !ok {
		return false
	}
	op, _ := m["__op"].(string)
	return op == "delete"
}

// keyValues returns r's key column values, converted.
func (s *sink) keyValues(r *stdlib.Record) ([]any, error) {
	out := make([]any, len(s.keys))
	var src map[string]any
	if r.Value != nil {
		src, _ = r.Value.(map[string]any)
		if src == nil {
			return nil, fmt.Errorf("record value is %s, not a record", describe(r.Value))
		}
	} else {
		switch k := r.Key.(type) {
		case map[string]any:
			src = k
		case nil:
			return nil, errors.New("tombstone without a key")
		default:
			if len(s.keys) != 1 {
				return nil, fmt.Errorf("tombstone key is %s; a key of %d columns needs a record key", describe(k), len(s.keys))
			}
			v := k
			if b, ok := k.([]byte); ok {
				v = string(b)
			}
			if str, ok := v.(string); ok && classOf(s.cols[s.keys[0]].Type) == classInt {
				n, err := strconv.ParseInt(str, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("tombstone key %q is not an integer for column %q", str, s.keys[0])
				}
				v = n
			}
			src = map[string]any{s.keys[0]: v}
		}
	}
	for i, k := range s.keys {
		v, ok := src[k]
		if !ok || v == nil {
			return nil, fmt.Errorf("record has no value for key field %q", k)
		}
		cv, err := toColumn(s.cols[k], v)
		if err != nil {
			return nil, err
		}
		out[i] = cv
	}
	return out, nil
}

// convert converts a batch into items, rejecting the records whose values
// do not fit their columns. cols are the columns written: the fields present
// in the batch (and the key columns), in table order.
func (s *sink) convert(batch []stdlib.Record) ([]item, []string, stdlib.RecordErrors) {
	var rejected stdlib.RecordErrors
	reject := func(i int, err error) {
		rejected = append(rejected, stdlib.RecordError{Index: i, Err: err})
	}
	// With a record type the columns are its fields; otherwise the fields
	// present in the batch.
	present := map[string]bool{}
	if s.rtype != nil {
		for _, f := range s.rtype.Fields {
			present[f.Name] = true
		}
	}
	writes := make([]bool, len(batch)) // record i writes a row (else it deletes)
	for i := range batch {
		r := &batch[i]
		switch s.mode {
		case opInsert:
			writes[i] = true
		case opUpsert:
			writes[i] = !isDelete(r)
		}
		if !writes[i] || s.rtype != nil {
			continue
		}
		if m, ok := r.Value.(map[string]any); ok {
			for f := range m {
				present[f] = true
			}
		}
	}
	var cols []string
	var missing error // a NOT NULL column without default no record feeds
	for _, name := range s.order {
		if present[name] || slices.Contains(s.keys, name) {
			cols = append(cols, name)
		} else if c := s.cols[name]; !c.Nullable && !c.HasDefault && missing == nil {
			missing = fmt.Errorf("column %q is NOT NULL and the record has no field %q", name, name)
		}
	}
	colPtrs := make([]*column, len(cols))
	for j, name := range cols {
		colPtrs[j] = s.cols[name]
	}
	keyPos := make([]int, len(s.keys)) // position of each key column in cols
	for i, k := range s.keys {
		keyPos[i] = slices.Index(cols, k)
	}
	items := make([]item, 0, len(batch))
	var sb strings.Builder
	for i := range batch {
		r := &batch[i]
		if !writes[i] {
			kv, err := s.keyValues(r)
			if err != nil {
				reject(i, err)
				continue
			}
			items = append(items, item{del: true, row: kv, key: keyString(&sb, kv), write: s.writes, idx: i, pos: r.Pos})
			continue
		}
		m, ok := r.Value.(map[string]any)
		if !ok {
			if r.Value == nil {
				reject(i, errors.New("a tombstone cannot be inserted (use mode = upsert to delete)"))
			} else {
				reject(i, fmt.Errorf("record value is %s, not a record", describe(r.Value)))
			}
			continue
		}
		if missing != nil {
			reject(i, missing)
			continue
		}
		row := make([]any, len(cols))
		var bad error
		found := 0 // fields of m that have a column
		for j, name := range cols {
			v, ok := m[name]
			if ok {
				found++
			}
			v, err := toColumn(colPtrs[j], v)
			if err != nil {
				bad = fmt.Errorf("field %q: %w", name, err)
				break
			}
			row[j] = v
		}
		if bad == nil && found < len(m) {
			for f := range m {
				if s.cols[f] == nil && f != "__op" && m[f] != nil {
					bad = fmt.Errorf("field %q has no column in table %q (add the column or set evolve = add_columns)", f, s.table.String())
					break
				}
			}
		}
		if bad != nil {
			reject(i, bad)
			continue
		}
		it := item{row: row, write: s.writes, idx: i, pos: r.Pos}
		if s.mode != opInsert {
			kv := make([]any, len(keyPos))
			for k, j := range keyPos {
				kv[k] = row[j]
			}
			it.key = keyString(&sb, kv)
		}
		items = append(items, it)
	}
	return items, cols, rejected
}

// keyString encodes converted key values as a map key.
func keyString(sb *strings.Builder, kv []any) string {
	sb.Reset()
	for i, v := range kv {
		if i > 0 {
			sb.WriteByte(0)
		}
		switch x := v.(type) {
		case int64:
			sb.WriteString(strconv.FormatInt(x, 10))
		case int32:
			sb.WriteString(strconv.FormatInt(int64(x), 10))
		case int16:
			sb.WriteString(strconv.FormatInt(int64(x), 10))
		case string:
			sb.WriteString(x)
		case []byte:
			sb.Write(x)
		case time.Time:
			sb.WriteString(x.UTC().Format(time.RFC3339Nano))
		default:
			fmt.Fprintf(sb, "%v", x)
		}
	}
	return sb.String()
}
