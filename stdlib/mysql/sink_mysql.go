package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the mysql sink.
var SinkSpec = &stdlib.Spec{
	Kind:       stdlib.SinkKind,
	Name:       "mysql",
	Summary:    "write records into a MySQL or MariaDB table (insert, upsert or delete), exactly once",
	Params:     sqlcommon.SinkParams(connParams...),
	Delivery:   []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Schema:     true,
	Check:      checkSink,
	CheckInput: sqlcommon.CheckInput,
	NewSink:    func(cfg stdlib.Config) (stdlib.Sink, error) { return newSink(cfg) },
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := sqlcommon.CheckSink(attrs, func(s string) error { _, err := parseTable(s); return err })
	return append(errs, checkConn(attrs)...)
}

type sink struct {
	conf    *connConfig
	table   tableName
	offsets tableName

	target     uint64 // InnoDB id of the table the positions are held for
	hasOffsets bool   // the offsets table exists (StoredPositions, SetPositions)
	stale      bool   // the offsets table holds positions of another table

	db     *sql.DB
	conn   *sql.Conn
	connID int64 // CONNECTION_ID() of conn
	tx     *sql.Tx

	sqlcommon.Sink[*column] // the table, the buffer, the transaction's steps
}

func newSink(cfg stdlib.Config) (*sink, error) {
	conf, err := newConnConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql sink: %w", err)
	}
	s := &sink{conf: conf}
	s.Sink = sqlcommon.NewSink[*column]("mysql", cfg, toColumn, s)
	if s.table, s.offsets, err = sqlcommon.ParseTables(cfg, parseTable); err == nil {
		err = s.Configure(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("mysql sink: %w", err)
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
	return sqlcommon.ResolveTables(&s.Sink, &s.table, &s.offsets, func(t tableName) (tableName, error) { return resolveDB(ctx, s.conn, t) })
}

// Columns returns the table's columns, none if it does not exist.
func (s *sink) Columns(ctx context.Context) ([]*column, error) {
	cols, err := readColumns(ctx, s.conn, s.table)
	return sqlcommon.Ptrs(cols), err
}

// Keys returns the unique indexes and the primary key of the table.
func (s *sink) Keys(ctx context.Context) ([]string, []string, error) {
	return indexes(ctx, s.conn, s.table)
}

// Held creates the offsets table if need be and returns the positions the
// task holds for the table.
func (s *sink) Held(ctx context.Context) ([]stdlib.Position, error) {
	if err := s.createOffsets(ctx, s.conn); err != nil {
		return nil, err
	}
	var err error
	if s.target, err = tableID(ctx, s.conn, s.table); err != nil {
		return nil, err
	}
	if s.target == 0 {
		s.Log.Warn("mysql: the table's InnoDB id cannot be read: positions are not tied to the table", "table", s.table.String())
	}
	return s.readHeld(ctx)
}

// Bufferable tells why rows of several Writes may not share a statement,
// or "" if they may: nothing in the table but column types and NOT NULL
// (which toColumn checks before sending) can make the server reject a
// row. Otherwise a rejected row must be found while the Write that
// brought it is still running.
func (s *sink) Bufferable(ctx context.Context, uniques []string) (string, error) {
	var why string
	err := s.conn.QueryRowContext(ctx, `
SELECT CASE
  WHEN (SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?) <> 'BASE TABLE' THEN 'not a plain table'
  WHEN EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?
               AND CHECK_CLAUSE NOT LIKE 'json_valid(%') THEN 'check constraints'
  WHEN EXISTS (SELECT 1 FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?
               AND (TABLE_NAME = ? OR REFERENCED_TABLE_NAME = ?)) THEN 'foreign keys'
  WHEN EXISTS (SELECT 1 FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?) THEN 'triggers'
  ELSE '' END`,
		s.table.DB, s.table.Name, s.table.DB, s.table.Name, s.table.DB, s.table.Name, s.table.Name, s.table.DB, s.table.Name).Scan(&why)
	if err != nil {
		return "", fmt.Errorf("read constraints of %q: %w", s.table.String(), err)
	}
	if why != "" {
		return why, nil
	}
	for _, name := range s.Tbl.Order {
		if c := s.Tbl.Cols[name]; c.Class == sqlcommon.ClassOther || c.Class == sqlcommon.ClassDecimal {
			return fmt.Sprintf("column %q of type %s takes values only the server checks", c.Name, c.SQLType), nil
		}
	}
	return s.Tbl.UniquesBar(uniques), nil
}

// CreateTable creates the table from the record type. Positions held for
// a table of that name before are not held (they carry its id), and the
// stage's positions are deleted after the table is created.
func (s *sink) CreateTable(ctx context.Context) error {
	if s.Tbl.RType == nil || len(s.Tbl.RType.Fields) == 0 {
		return fmt.Errorf("create_table needs the record type: declare schema = ... on sink %q", s.ID)
	}
	var defs []string
	for _, f := range s.Tbl.RType.Fields {
		if f.Name == "__op" {
			continue
		}
		typ := myTypes.Of(f.Type)
		if slices.Contains(s.Tbl.Keys, f.Name) {
			typ = keyType(f.Type) + " NOT NULL"
		}
		defs = append(defs, quote(f.Name)+" "+typ)
	}
	pk, err := s.Tbl.PrimaryKey(quote)
	if err != nil {
		return err
	}
	if pk != "" {
		defs = append(defs, pk)
	}
	_, err = s.conn.ExecContext(ctx, "CREATE TABLE "+s.table.sql()+" (\n  "+strings.Join(defs, ",\n  ")+"\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == erTableExists {
		return nil // another task created it meanwhile
	}
	if err != nil {
		return fmt.Errorf("create table %q: %w", s.table.String(), err)
	}
	var forgot int64
	if s.Exactly {
		if err := s.createOffsets(ctx, s.conn); err != nil {
			return err
		}
		res, err := s.conn.ExecContext(ctx, "DELETE FROM "+s.offsets.sql()+" "+forgetSQL, s.Pipeline, s.Stage)
		if err != nil {
			return fmt.Errorf("forget positions: %w", err)
		}
		forgot, _ = res.RowsAffected()
	}
	s.Log.Info("mysql: created table", "table", s.table.String(), "positions_forgotten", forgot)
	return nil
}

// CheckType checks the record type against the table's columns, adding
// columns for new fields when evolve = add_columns.
func (s *sink) CheckType(ctx context.Context) error {
	add, err := s.Tbl.CheckType(s.Evolve, compatible, func(f *types.Field) string { return myTypes.Of(f.Type) },
		func(field string) {
			s.Log.Warn("mysql: optional field feeds a NOT NULL column; null values will be rejected", "field", field)
		})
	if err != nil || len(add) == 0 {
		return err
	}
	return s.addColumns(ctx, add)
}

// addColumns adds cols to the table, outside any transaction: DDL commits
// the open transaction in MySQL.
func (s *sink) addColumns(ctx context.Context, cols []sqlcommon.NewColumn) error {
	var add []string
	for _, c := range cols {
		add = append(add, "ADD COLUMN IF NOT EXISTS "+quote(c.Name)+" "+c.SQL)
	}
	if _, err := s.conn.ExecContext(ctx, "ALTER TABLE "+s.table.sql()+" "+strings.Join(add, ", ")); err != nil {
		return fmt.Errorf("evolve table %q: %w", s.table.String(), err)
	}
	s.Log.Info("mysql: added columns", "table", s.table.String(), "count", len(add))
	got, err := readColumns(ctx, s.conn, s.table)
	if err != nil {
		return err
	}
	s.Tbl.SetColumns(sqlcommon.Ptrs(got))
	return nil
}

// EvolveFor adds a nullable column for every field of the batch that the
// table lacks. DDL commits the open transaction in MySQL: it is rolled
// back first, and replayed after.
func (s *sink) EvolveFor(ctx context.Context, batch []stdlib.Record) error {
	add := s.Tbl.Evolve(batch, &myTypes)
	if len(add) == 0 {
		return nil
	}
	if len(s.Buf.Items) > 0 {
		if _, err := s.Flush(ctx); err != nil {
			return err
		}
	}
	return s.Retry(ctx, func() error {
		s.Abort(ctx)
		if err := s.dial(ctx); err != nil {
			return err
		}
		return s.addColumns(ctx, add)
	})
}
