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
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec describes the postgres source.
var SourceSpec = &stdlib.Spec{
	Kind:      stdlib.SourceKind,
	Name:      "postgres",
	Summary:   "read a PostgreSQL table or query incrementally (by id, timestamp or both) or in bulk",
	Params:    sqlcommon.SourceParams(dsnParam),
	Schema:    true,
	Meta:      []stdlib.MetaField{stdlib.MetaOffset},
	Check:     checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newSource(cfg) },
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	return sqlcommon.CheckSource(attrs, func(s string) error { _, err := parseTable(s); return err })
}

// pgDialect is PostgreSQL's SQL for the incremental queries.
type pgDialect struct{}

func (pgDialect) Quote(name string) string { return quote(name) }
func (pgDialect) Param(n int) string       { return fmt.Sprintf("$%d", n) }
func (pgDialect) Older(ts, arg string) string {
	return ts + " < now() - make_interval(secs => " + arg + ")"
}
func (pgDialect) DelayArg(d time.Duration) any { return d.Seconds() }
func (pgDialect) TimeArg(t time.Time) any      { return t }

type source struct {
	dsn   string
	table tableName

	conn *pgx.Conn
	cols []column
	bulk pgx.Rows

	lag sourceLag

	sqlcommon.Source // settings, offset, poller
}

func newSource(cfg stdlib.Config) (*source, error) {
	s := &source{dsn: cfg.String("dsn")}
	if s.dsn == "" {
		return nil, errors.New("postgres source: dsn is empty")
	}
	var err error
	s.Source, err = sqlcommon.NewSource("postgres", cfg, checkSource, func(t string) (err error) {
		s.table, err = parseTable(t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres source: %w", err)
	}
	return s, nil
}

// Open connects, reads the columns, checks the declared schema and the
// mode's columns, and positions after the resumed offset.
func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	if s.Task != 0 {
		return nil // one reader per table: other tasks stay idle
	}
	var id string // what the positions point into, when resuming
	err := retry.Do(ctx, s.Backoff(), transient, func() error {
		var err error
		if s.conn, err = connect(ctx, s.dsn); err != nil {
			return err
		}
		s.cols = nil
		if err = s.describe(ctx); err == nil && resume != nil {
			id, err = s.identity(ctx)
		}
		if err != nil {
			s.dropConn()
		}
		return err
	})
	if err != nil {
		return err
	}
	s.Resumed(resume, id)
	return nil
}

// identity is what the source's offsets point into (stdlib.Position): the
// server's system identifier (which pg_control_system() gives, and a
// physical copy keeps), the database's OID and the table's, so that a table
// dropped and created again, another database or a new server are not
// taken for the one read before. A query is identified by its database.
// When pg_control_system() cannot be called (revoked, not offered by the
// service) the identity goes without the system identifier, and the log
// says so.
func (s *source) identity(ctx context.Context) (string, error) {
	var db, rel uint32
	err := s.conn.QueryRow(ctx, `SELECT (SELECT oid FROM pg_database WHERE datname = current_database()),
  coalesce((SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2), 0)`,
		s.table.Schema, s.table.Name).Scan(&db, &rel)
	if err != nil {
		return "", fmt.Errorf("read the table's identity: %w", err)
	}
	id := fmt.Sprintf("database %d", db)
	if s.HasTable {
		id += fmt.Sprintf(" table %d", rel)
	}
	var sys int64
	if err := s.conn.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&sys); err != nil {
		if !errors.As(err, new(*pgconn.PgError)) {
			return "", fmt.Errorf("read the system identifier: %w", err)
		}
		s.Log.Info("postgres: the identity of the source's positions goes without the server's system identifier",
			"because", err.Error(), "identity", id)
		return id, nil
	}
	return fmt.Sprintf("system %d %s", uint64(sys), id), nil
}

func (s *source) describe(ctx context.Context) error {
	var err error
	if s.HasTable {
		if s.table, err = resolveSchema(ctx, s.conn, s.table); err != nil {
			return err
		}
		if s.cols, err = readColumns(ctx, s.conn, s.table); err != nil {
			return err
		}
		if len(s.cols) == 0 {
			return fmt.Errorf("table %q does not exist", s.table.String())
		}
	} else {
		rows, err := s.conn.Query(ctx, "SELECT * FROM ("+s.SQL+") AS pipe_q LIMIT 0")
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		fds := rows.FieldDescriptions()
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		tm := s.conn.TypeMap()
		for _, fd := range fds {
			name := fmt.Sprintf("oid %d", fd.DataTypeOID)
			if t, ok := tm.TypeForOID(fd.DataTypeOID); ok {
				name = t.Name
			}
			s.cols = append(s.cols, column{Name: fd.Name, Type: name, SQLType: name, Nullable: true})
		}
	}
	cols := make([]*column, len(s.cols))
	for i := range s.cols {
		cols[i] = &s.cols[i]
	}
	return sqlcommon.CheckColumns(cols, s.Mode, s.Inc, s.TS, s.Schema, s.what(), func(col string) {
		s.Log.Warn("postgres: nullable column read into a non-optional field", "column", col)
	})
}

func (s *source) what() string {
	if s.HasTable {
		return fmt.Sprintf("table %q", s.table.String())
	}
	return "the query"
}

// Type returns the record type the columns give.
func (s *source) Type() *types.Type {
	cols := make([]*column, len(s.cols))
	for i := range s.cols {
		cols[i] = &s.cols[i]
	}
	return sqlcommon.ColumnsType(cols)
}

func (s *source) from() string { return s.From(s.table.sql()) }

// Read returns the next batch of rows, polling once caught up.
func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	if s.Task != 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.conn == nil && s.cols == nil {
		return nil, errors.New("not open")
	}
	fetch := func(ctx context.Context) ([]stdlib.Record, error) {
		recs, err := s.fetch(ctx)
		if err == nil {
			s.noteLag(ctx, len(recs))
		}
		return recs, err
	}
	return s.Poller.Read(ctx, s.Mode == sqlcommon.ModeBulk, s.Backoff(), fetch,
		func(err error) (error, bool) {
			if !transient(err) || ctx.Err() != nil {
				return err, false
			}
			s.dropConn()
			return err, true
		})
}

func (s *source) dropConn() {
	if s.bulk != nil {
		s.bulk.Close()
		s.bulk = nil
	}
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.conn.Close(ctx)
		cancel()
		s.conn = nil
	}
}

func (s *source) fetch(ctx context.Context) ([]stdlib.Record, error) {
	if s.conn == nil || s.conn.IsClosed() {
		conn, err := connect(ctx, s.dsn)
		if err != nil {
			return nil, err
		}
		s.conn = conn
	}
	if s.Mode == sqlcommon.ModeBulk {
		return s.fetchBulk(ctx)
	}
	return s.Fetch(ctx, s.Query(pgDialect{}, s.from()), s.collect)
}

func (s *source) fetchBulk(ctx context.Context) ([]stdlib.Record, error) {
	if s.bulk == nil {
		sql := "SELECT * FROM " + s.from()
		if s.HasTable {
			pk, err := primaryKey(ctx, s.conn, s.table)
			if err != nil {
				return nil, err
			}
			if len(pk) > 0 {
				q := make([]string, len(pk))
				for i, k := range pk {
					q[i] = quote(k)
				}
				sql += " ORDER BY " + strings.Join(q, ", ")
			}
		}
		rows, err := s.conn.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		s.bulk = rows
		s.Ordinal = 0
	}
	return s.Bulk(s.At(), s.Batch, &s.Ordinal, s.bulk.Next,
		func(ordinal int64) (stdlib.Record, error) {
			r, err := s.record(s.bulk, ordinal, false)
			if err != nil {
				s.bulk.Close()
				s.bulk = nil
			}
			return r, err
		},
		func() error {
			err := s.bulk.Err()
			s.bulk.Close()
			s.bulk = nil
			return err
		})
}

// collect runs sql and converts its rows; ts says the offset is the
// timestamp column in microseconds (else the incrementing column).
func (s *source) collect(ctx context.Context, sql string, args []any, ts bool) ([]stdlib.Record, error) {
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return sqlcommon.Collect(s.At(), rows.Next,
		func() (stdlib.Record, error) { return s.record(rows, 0, ts) }, rows.Err)
}

// record converts the current row. The offset is ordinal in bulk mode,
// else read from the mode's column.
func (s *source) record(rows pgx.Rows, ordinal int64, ts bool) (stdlib.Record, error) {
	vals, err := rows.Values()
	if err != nil {
		return stdlib.Record{}, err
	}
	raws := rows.RawValues()
	fds := rows.FieldDescriptions()
	return sqlcommon.RowRecord(sqlcommon.Row{Mode: s.Mode, Inc: s.Inc, TS: s.TS, ByTS: ts, Count: len(vals),
		Column: func(i int) (string, any, error) {
			var c *column
			if i < len(s.cols) && s.cols[i].Name == fds[i].Name {
				c = &s.cols[i]
			} else {
				c = &column{Name: fds[i].Name}
				if t, ok := s.conn.TypeMap().TypeForOID(fds[i].DataTypeOID); ok {
					c.Type = t.Name
				}
			}
			var raw []byte
			if i < len(raws) {
				raw = raws[i]
			}
			nv, err := fromColumn(c, vals[i], raw)
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
	return disconnect(ctx, &s.conn)
}
