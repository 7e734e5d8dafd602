package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec describes the mysql source.
var SourceSpec = &stdlib.Spec{
	Kind:      stdlib.SourceKind,
	Name:      "mysql",
	Summary:   "read a MySQL or MariaDB table or query incrementally (by id, timestamp or both) or in bulk",
	Params:    sqlcommon.SourceParams(connParams...),
	Schema:    true,
	Meta:      []stdlib.MetaField{stdlib.MetaOffset},
	Check:     checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newSource(cfg) },
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	errs := sqlcommon.CheckSource(attrs, func(s string) error { _, err := parseTable(s); return err })
	return append(errs, checkConn(attrs)...)
}

// dialect is MySQL's SQL for the incremental queries. DATETIME values are
// UTC (the session's time zone is +00:00).
type dialect struct{}

func (dialect) Quote(name string) string { return quote(name) }
func (dialect) Param(int) string         { return "?" }
func (dialect) Older(ts, arg string) string {
	return ts + " < NOW(6) - INTERVAL " + arg + " MICROSECOND"
}
func (dialect) DelayArg(d time.Duration) any { return d.Microseconds() }
func (dialect) TimeArg(t time.Time) any      { return t }

type source struct {
	conf  *connConfig
	table tableName

	db       *sql.DB
	cols     []*column
	bulk     *sql.Rows
	bulkScan *scanner

	sqlcommon.Source // settings, offset, poller
}

func newSource(cfg stdlib.Config) (*source, error) {
	conf, err := newConnConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql source: %w", err)
	}
	s := &source{conf: conf}
	s.Source, err = sqlcommon.NewSource("mysql", cfg, checkSource, func(t string) (err error) {
		s.table, err = parseTable(t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mysql source: %w", err)
	}
	return s, nil
}

// Open connects, reads the columns, checks the declared schema and the
// mode's columns, and positions after the resumed offset.
func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	if s.Task != 0 {
		return nil // one reader per table: other tasks stay idle
	}
	db, err := s.conf.open()
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(2)
	s.db = db
	var id string // what the positions point into, when resuming
	err = retry.Do(ctx, s.Backoff(), transient, func() error {
		s.cols = nil
		err := s.describe(ctx)
		if err == nil && resume != nil {
			id, err = s.identity(ctx)
		}
		return s.conf.redact(err)
	})
	if err != nil {
		return err
	}
	s.Resumed(resume, id)
	return nil
}

// identity is what the source's offsets point into (stdlib.Position): the
// server (MySQL's @@server_uuid, else MariaDB's @@server_id), the database
// and the table's InnoDB id, which changes when the table is dropped and
// created again. A query is identified by its server and database.
func (s *source) identity(ctx context.Context) (string, error) {
	var server string
	err := s.db.QueryRowContext(ctx, "SELECT @@server_uuid").Scan(&server)
	var me *mysql.MySQLError
	if errors.As(err, &me) && !transient(err) { // MariaDB: no server_uuid
		var sid int64
		err = s.db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&sid)
		server = fmt.Sprintf("id %d", sid)
	}
	if err != nil {
		return "", fmt.Errorf("read the server's identity: %w", err)
	}
	t, err := resolveDB(ctx, s.db, s.table)
	if err != nil {
		return "", err
	}
	id := fmt.Sprintf("server %s database %s", server, t.DB)
	if s.HasTable {
		tid, err := tableID(ctx, s.db, s.table)
		if err != nil {
			return "", err
		}
		id += fmt.Sprintf(" table %d", tid)
	}
	return id, nil
}

func (s *source) describe(ctx context.Context) error {
	var err error
	if s.HasTable {
		if s.table, err = resolveDB(ctx, s.db, s.table); err != nil {
			return err
		}
		cols, err := readColumns(ctx, s.db, s.table)
		if err != nil {
			return err
		}
		if len(cols) == 0 {
			return fmt.Errorf("table %q does not exist", s.table.String())
		}
		for i := range cols {
			s.cols = append(s.cols, &cols[i])
		}
	} else {
		rows, err := s.db.QueryContext(ctx, "SELECT * FROM ("+s.SQL+") AS pipe_q LIMIT 0")
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		cts, err := rows.ColumnTypes()
		rows.Close()
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		for _, ct := range cts {
			dt := strings.ToLower(strings.TrimPrefix(ct.DatabaseTypeName(), "UNSIGNED "))
			c := &column{Name: ct.Name(), DataType: dt, SQLType: strings.ToLower(ct.DatabaseTypeName()), Nullable: true,
				Unsigned: strings.HasPrefix(ct.DatabaseTypeName(), "UNSIGNED ")}
			c.Class = classOf(dt, dt, false)
			s.cols = append(s.cols, c)
		}
	}
	return sqlcommon.CheckColumns(s.cols, s.Mode, s.Inc, s.TS, s.Schema, s.what(), func(col string) {
		s.Log.Warn("mysql: nullable column read into a non-optional field", "column", col)
	})
}

func (s *source) what() string {
	if s.HasTable {
		return fmt.Sprintf("table %q", s.table.String())
	}
	return "the query"
}

// Type returns the record type the columns give.
func (s *source) Type() *types.Type { return sqlcommon.ColumnsType(s.cols) }

func (s *source) from() string { return s.From(s.table.sql()) }

// Read returns the next batch of rows, polling once caught up.
func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	if s.Task != 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.db == nil {
		return nil, errors.New("not open")
	}
	return s.Poller.Read(ctx, s.Mode == sqlcommon.ModeBulk, s.Backoff(), s.fetch,
		func(err error) (error, bool) {
			if s.bulk != nil {
				s.bulk.Close()
				s.bulk = nil
			}
			err = s.conf.redact(err)
			return err, transient(err) && ctx.Err() == nil
		})
}

func (s *source) fetch(ctx context.Context) ([]stdlib.Record, error) {
	if s.Mode == sqlcommon.ModeBulk {
		return s.fetchBulk(ctx)
	}
	return s.Fetch(ctx, s.Query(dialect{}, s.from()), s.collect)
}

func (s *source) fetchBulk(ctx context.Context) ([]stdlib.Record, error) {
	if s.bulk == nil {
		query := "SELECT * FROM " + s.from()
		if s.HasTable {
			_, pk, err := indexes(ctx, s.db, s.table)
			if err != nil {
				return nil, err
			}
			if len(pk) > 0 {
				query += " ORDER BY " + columnList(pk)
			}
		}
		rows, err := s.db.QueryContext(ctx, query)
		if err != nil {
			return nil, err
		}
		s.bulk = rows
		s.Ordinal = 0
		if s.bulkScan, err = s.scanner(rows); err != nil {
			return nil, err
		}
	}
	return s.Bulk(s.At(), s.Batch, &s.Ordinal, s.bulk.Next,
		func(ordinal int64) (stdlib.Record, error) { return s.record(s.bulk, s.bulkScan, ordinal, false) },
		func() error {
			err := s.bulk.Err()
			s.bulk.Close()
			s.bulk = nil
			return err
		})
}

// collect runs query and converts its rows; ts says the offset is the
// timestamp column in microseconds (else the incrementing column).
func (s *source) collect(ctx context.Context, query string, args []any, ts bool) ([]stdlib.Record, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	sc, err := s.scanner(rows)
	if err != nil {
		return nil, err
	}
	return sqlcommon.Collect(s.At(), rows.Next,
		func() (stdlib.Record, error) { return s.record(rows, sc, 0, ts) }, rows.Err)
}

// scanner holds what the rows of one query are scanned with.
type scanner struct {
	names []string
	cols  []*column // of each name
	vals  []any
	ptrs  []any
}

func (s *source) scanner(rows *sql.Rows) (*scanner, error) {
	names, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	sc := &scanner{names: names, cols: make([]*column, len(names)), vals: make([]any, len(names)), ptrs: make([]any, len(names))}
	for i, n := range names {
		sc.ptrs[i] = &sc.vals[i]
		sc.cols[i] = &column{Name: n}
		if i < len(s.cols) && s.cols[i].Name == n {
			sc.cols[i] = s.cols[i]
		}
	}
	return sc, nil
}

// record converts the current row. The offset is ordinal in bulk mode,
// else read from the mode's column.
func (s *source) record(rows *sql.Rows, sc *scanner, ordinal int64, ts bool) (stdlib.Record, error) {
	vals := sc.vals
	if err := rows.Scan(sc.ptrs...); err != nil {
		return stdlib.Record{}, err
	}
	return sqlcommon.RowRecord(sqlcommon.Row{Mode: s.Mode, Inc: s.Inc, TS: s.TS, ByTS: ts, Count: len(vals),
		Column: func(i int) (string, any, error) {
			c := sc.cols[i]
			nv, err := fromColumn(c, vals[i])
			return c.Name, nv, err
		}}, stdlib.Position{Source: s.Stage, Partition: s.Partition, Offset: ordinal})
}

// Commit has nothing to do: positions live in the executor's state store
// or with the sinks.
func (s *source) Commit(ctx context.Context, positions []stdlib.Position) error { return nil }

// Close disconnects.
func (s *source) Close(ctx context.Context) error {
	if s.bulk != nil {
		s.bulk.Close()
		s.bulk = nil
	}
	return s.conf.close(&s.db)
}
