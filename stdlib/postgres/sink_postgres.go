package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the postgres sink.
var SinkSpec = &stdlib.Spec{
	Kind:       stdlib.SinkKind,
	Name:       "postgres",
	Summary:    "write records into a PostgreSQL table (insert, upsert or delete), exactly once",
	Params:     sqlcommon.SinkParams(dsnParam),
	Delivery:   []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Schema:     true,
	Check:      checkSink,
	CheckInput: sqlcommon.CheckInput,
	NewSink:    func(cfg stdlib.Config) (stdlib.Sink, error) { return newSink(cfg) },
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	return sqlcommon.CheckSink(attrs, func(s string) error { _, err := parseTable(s); return err })
}

type sink struct {
	dsn     string
	table   tableName
	offsets tableName

	target     uint32 // OID of the table the positions are held for
	hasOffsets bool   // the offsets table exists (StoredPositions, SetPositions)
	stale      bool   // the offsets table holds positions of another table

	instance  int    // of the pipeline (stdlib.Config.Instance)
	ownerName string // stdlib.Config.Owner
	epoch     int64  // exactly_once: the epoch Open took (see fence.go)

	conn         *pgx.Conn
	backendStart time.Time // of conn's server process
	tx           pgx.Tx

	sqlcommon.Sink[*column] // the table, the buffer, the transaction's steps
}

func newSink(cfg stdlib.Config) (*sink, error) {
	s := &sink{dsn: cfg.String("dsn"), instance: cfg.Instance, ownerName: cfg.Owner}
	s.Sink = sqlcommon.NewSink[*column]("postgres", cfg, toColumn, s)
	if s.dsn == "" {
		return nil, errors.New("postgres sink: dsn is empty")
	}
	var err error
	if s.table, s.offsets, err = sqlcommon.ParseTables(cfg, parseTable); err == nil {
		err = s.Configure(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	return s, nil
}

// Connect connects unless connected, forgetting any transaction.
func (s *sink) Connect(ctx context.Context) error {
	s.tx = nil
	return s.dial(ctx)
}

// Resolve qualifies the names of the table and of the offsets table.
func (s *sink) Resolve(ctx context.Context) error {
	return sqlcommon.ResolveTables(&s.Sink, &s.table, &s.offsets, func(t tableName) (tableName, error) { return resolveSchema(ctx, s.conn, t) })
}

// Columns returns the table's columns, none if it does not exist.
func (s *sink) Columns(ctx context.Context) ([]*column, error) {
	cols, err := readColumns(ctx, s.conn, s.table)
	return sqlcommon.Ptrs(cols), err
}

// Keys returns the unique indexes and the primary key of the table.
func (s *sink) Keys(ctx context.Context) ([]string, []string, error) {
	uniques, err := s.uniqueIndexes(ctx)
	if err != nil {
		return nil, nil, err
	}
	pk, err := primaryKey(ctx, s.conn, s.table)
	return uniques, pk, err
}

// Held creates the offsets table if need be, takes the next epoch of the
// task's instance (fencing earlier runs of it) and returns the positions
// the task holds for the table.
func (s *sink) Held(ctx context.Context) ([]stdlib.Position, error) {
	if err := s.createOffsets(ctx, s.conn); err != nil {
		return nil, err
	}
	if err := s.fence(ctx); err != nil {
		return nil, err
	}
	var err error
	if s.target, err = tableOID(ctx, s.conn, s.table); err != nil {
		return nil, err
	}
	return s.readHeld(ctx)
}

// Bufferable tells why rows of several Writes may not share a statement,
// or "" if they may: the table has nothing but column types and NOT NULL
// (which convert checks before sending) that could make the server reject a
// row; a numeric(p, s) column (overflow, infinities) or a column of another
// type (enum labels, inet, arrays, ...) is checked by the server only. Otherwise a rejected row must be found while the Write that brought
// it is still running.
func (s *sink) Bufferable(ctx context.Context, uniques []string) (string, error) {
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
	for _, name := range s.Tbl.Order {
		if c := s.Tbl.Cols[name]; c.Class == sqlcommon.ClassOther || c.Class == sqlcommon.ClassDecimal && c.SQLType != c.BaseType {
			return fmt.Sprintf("column %q of type %s takes values only the server checks", c.Name, c.SQLType), nil
		}
	}
	return s.Tbl.UniquesBar(uniques), nil
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

// CreateTable creates the table (and its schema) from the record type. An
// exactly-once sink holds nothing of a table it creates: in the same
// transaction it forgets what every task of the stage held for the table's
// previous incarnation (or for the table `table` named before).
func (s *sink) CreateTable(ctx context.Context) error {
	if s.Tbl.RType == nil || len(s.Tbl.RType.Fields) == 0 {
		return fmt.Errorf("create_table needs the record type: declare schema = ... on sink %q", s.ID)
	}
	var defs []string
	for _, f := range s.Tbl.RType.Fields {
		if f.Name == "__op" {
			continue
		}
		defs = append(defs, quote(f.Name)+" "+pgTypes.Of(f.Type))
	}
	pk, err := s.Tbl.PrimaryKey(quote)
	if err != nil {
		return err
	}
	if pk != "" {
		defs = append(defs, pk)
	}
	if _, err := s.conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quote(s.table.Schema)); err != nil && !alreadyExists(err) {
		return fmt.Errorf("create schema %q: %w", s.table.Schema, err)
	}
	if s.Exactly {
		if err := s.createOffsets(ctx, s.conn); err != nil {
			return err
		}
	}
	var forgot int64
	err = pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TABLE "+s.table.sql()+" (\n  "+strings.Join(defs, ",\n  ")+"\n)"); err != nil {
			return err
		}
		if !s.Exactly {
			return nil
		}
		tag, err := tx.Exec(ctx, "DELETE FROM "+s.offsets.sql()+" "+forgetSQL, s.Pipeline, s.Stage)
		forgot = tag.RowsAffected()
		return err
	})
	if alreadyExists(err) {
		return nil // another task created it meanwhile
	}
	if err != nil {
		return fmt.Errorf("create table %q: %w", s.table.String(), err)
	}
	s.Log.Info("postgres: created table", "table", s.table.String(), "positions_forgotten", forgot)
	return nil
}

// alreadyExists reports the error of a concurrent CREATE ... IF NOT EXISTS.
func alreadyExists(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P07" || pe.Code == "23505" || pe.Code == "42P06")
}

// CheckType checks the record type against the table's columns, adding
// columns for new fields when evolve = add_columns.
func (s *sink) CheckType(ctx context.Context) error {
	newCols, err := s.Tbl.CheckType(s.Evolve, compatible, func(f *types.Field) string { return pgTypes.Of(f.Type) },
		func(field string) {
			s.Log.Warn("postgres: optional field feeds a NOT NULL column; null values will be rejected",
				"field", field, "column", field)
		})
	if err != nil {
		return err
	}
	add := addColumns(newCols)
	if len(add) == 0 {
		return nil
	}
	if _, err := s.conn.Exec(ctx, "ALTER TABLE "+s.table.sql()+" "+strings.Join(add, ", ")); err != nil {
		return fmt.Errorf("evolve table %q: %w", s.table.String(), err)
	}
	s.Log.Info("postgres: added columns", "table", s.table.String(), "count", len(add))
	cols, err := readColumns(ctx, s.conn, s.table)
	if err != nil {
		return err
	}
	s.Tbl.SetColumns(sqlcommon.Ptrs(cols))
	return nil
}

// addColumns returns the ALTER TABLE clauses adding cols.
func addColumns(cols []sqlcommon.NewColumn) []string {
	var add []string
	for _, c := range cols {
		add = append(add, "ADD COLUMN IF NOT EXISTS "+quote(c.Name)+" "+c.SQL)
	}
	return add
}
