package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec describes the postgres source.
var SourceSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "postgres",
	Summary: "read a PostgreSQL table or query incrementally (by id, timestamp or both) or in bulk",
	Params: []stdlib.Param{
		dsnParam,
		{Name: "table", Type: stdlib.String, Doc: "table to read, optionally schema-qualified"},
		{Name: "query", Type: stdlib.String, Doc: "SELECT to read instead of a table; the mode's columns must be in its output"},
		{Name: "mode", Type: stdlib.Enum("incrementing", "timestamp", "timestamp_incrementing", "bulk"),
			Default: stdlib.Ident("incrementing"),
			Doc:     "incrementing: new rows by a growing id; timestamp: new or updated rows by a timestamp; both; bulk: one ordered read"},
		{Name: "incrementing_column", Type: stdlib.String, Doc: "a strictly growing integer column (incrementing modes)"},
		{Name: "timestamp_column", Type: stdlib.String, Doc: "a timestamp column set on insert and update (timestamp modes)"},
		{Name: "poll", Type: stdlib.Duration, Default: time.Second, Doc: "how often to look for new rows once caught up"},
		{Name: "batch", Type: stdlib.Int, Default: int64(10000), Doc: "rows per query"},
		{Name: "delay", Type: stdlib.Duration, Default: time.Duration(0),
			Doc: "timestamp modes: only read rows older than this, so that transactions still open are not overtaken"},
		retry.Param,
		{Name: "schema", Type: stdlib.Schema, Doc: "the record type, checked against the columns at start"},
	},
	Schema:    true,
	Meta:      []stdlib.MetaField{stdlib.MetaOffset},
	Check:     checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newSource(cfg) },
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	_, hasTable := attrs["table"]
	_, hasQuery := attrs["query"]
	switch {
	case hasTable && hasQuery:
		errs = append(errs, stdlib.AttrError{Attr: "query", Message: "set table or query, not both"})
	case !hasTable && !hasQuery:
		errs = append(errs, stdlib.AttrError{Attr: "table", Message: "set table or query"})
	}
	if s, ok := attrs["table"].(string); ok {
		if _, err := parseTable(s); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "table", Message: err.Error()})
		}
	}
	mode, _ := attrs["mode"].(stdlib.Ident)
	_, hasInc := attrs["incrementing_column"]
	_, hasTS := attrs["timestamp_column"]
	if (mode == "incrementing" || mode == "timestamp_incrementing") && !hasInc {
		errs = append(errs, stdlib.AttrError{Attr: "mode", Message: fmt.Sprintf("mode %s needs incrementing_column", mode)})
	}
	if (mode == "timestamp" || mode == "timestamp_incrementing") && !hasTS {
		errs = append(errs, stdlib.AttrError{Attr: "mode", Message: fmt.Sprintf("mode %s needs timestamp_column", mode)})
	}
	if n, ok := attrs["batch"].(int64); ok && n <= 0 {
		errs = append(errs, stdlib.AttrError{Attr: "batch", Message: "batch must be positive"})
	}
	if d, ok := attrs["poll"].(time.Duration); ok && d <= 0 {
		errs = append(errs, stdlib.AttrError{Attr: "poll", Message: "poll must be positive"})
	}
	if d, ok := attrs["delay"].(time.Duration); ok && d < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "delay", Message: "delay must not be negative"})
	}
	return append(errs, retry.Check(attrs)...)
}

type readMode int

const (
	modeIncrementing readMode = iota
	modeTimestamp
	modeTimestampIncrementing
	modeBulk
)

type source struct {
	log          *slog.Logger
	dsn          string
	table        tableName
	hasTable     bool
	query        string
	mode         readMode
	inc, ts      string
	poll, delay  time.Duration
	batch        int
	retryTimeout time.Duration
	stage        string
	partition    string
	task         int
	schema       *types.Type

	conn    *pgx.Conn
	cols    []column
	last    int64 // offset of the last record emitted
	hasLast bool
	idle    bool // the last query found nothing new: wait poll before the next
	bulk    pgx.Rows
	ordinal int64 // bulk: rows of the current read so far
	done    bool  // bulk read finished

	lag sourceLag
}

func newSource(cfg stdlib.Config) (*source, error) {
	s := &source{
		log:          cfg.Logger,
		dsn:          cfg.String("dsn"),
		query:        cfg.String("query"),
		inc:          cfg.String("incrementing_column"),
		ts:           cfg.String("timestamp_column"),
		poll:         cfg.Duration("poll"),
		delay:        cfg.Duration("delay"),
		batch:        int(cfg.Int("batch")),
		retryTimeout: cfg.Duration(retry.Param.Name),
		stage:        cfg.Stage,
		task:         cfg.Task,
		schema:       cfg.Schema,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.dsn == "" {
		return nil, errors.New("postgres source: dsn is empty")
	}
	if errs := checkSource(cfg.Attrs); len(errs) > 0 {
		return nil, fmt.Errorf("postgres source: %s", errs[0].Message)
	}
	if t := cfg.String("table"); t != "" {
		var err error
		if s.table, err = parseTable(t); err != nil {
			return nil, fmt.Errorf("postgres source: %w", err)
		}
		s.hasTable = true
		s.partition = t
	} else {
		s.partition = "query"
	}
	switch cfg.String("mode") {
	case "incrementing":
		s.mode = modeIncrementing
	case "timestamp":
		s.mode = modeTimestamp
	case "timestamp_incrementing":
		s.mode = modeTimestampIncrementing
	case "bulk":
		s.mode = modeBulk
	default:
		return nil, fmt.Errorf("postgres source: unknown mode %q", cfg.String("mode"))
	}
	return s, nil
}

// Open connects, reads the columns, checks the declared schema and the
// mode's columns, and positions after the resumed offset.
func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	if s.task != 0 {
		return nil // one reader per table: other tasks stay idle
	}
	var id string // what the positions point into, when resuming
	err := retry.Do(ctx, s.backoff(), transient, func() error {
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
		return fmt.Errorf("postgres source %q: %w", s.stage, err)
	}
	if resume != nil {
		if off, ok := resume.Resume(s.partition, id); ok {
			s.last, s.hasLast = off, true
		}
	}
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
	if s.hasTable {
		id += fmt.Sprintf(" table %d", rel)
	}
	var sys int64
	if err := s.conn.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&sys); err != nil {
		if !errors.As(err, new(*pgconn.PgError)) {
			return "", fmt.Errorf("read the system identifier: %w", err)
		}
		s.log.Info("postgres: the identity of the source's positions goes without the server's system identifier",
			"because", err.Error(), "identity", id)
		return id, nil
	}
	return fmt.Sprintf("system %d %s", uint64(sys), id), nil
}

func (s *source) describe(ctx context.Context) error {
	var err error
	if s.hasTable {
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
		rows, err := s.conn.Query(ctx, "SELECT * FROM ("+s.query+") AS pipe_q LIMIT 0")
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
	find := func(name string) *column {
		for i := range s.cols {
			if s.cols[i].Name == name {
				return &s.cols[i]
			}
		}
		return nil
	}
	if s.mode == modeIncrementing || s.mode == modeTimestampIncrementing {
		c := find(s.inc)
		if c == nil {
			return fmt.Errorf("incrementing_column %q is not a column of %s", s.inc, s.what())
		}
		if classOf(c.Type) != classInt {
			return fmt.Errorf("incrementing_column %q is %s, not an integer", s.inc, c.SQLType)
		}
	}
	if s.mode == modeTimestamp || s.mode == modeTimestampIncrementing {
		c := find(s.ts)
		if c == nil {
			return fmt.Errorf("timestamp_column %q is not a column of %s", s.ts, s.what())
		}
		if c.Type != "timestamptz" && c.Type != "timestamp" && c.Type != "date" {
			return fmt.Errorf("timestamp_column %q is %s, not a timestamp", s.ts, c.SQLType)
		}
	}
	if s.schema != nil {
		var problems []string
		for _, f := range s.schema.Fields {
			c := find(f.Name)
			if c == nil {
				problems = append(problems, fmt.Sprintf("field %q of schema %s has no column in %s", f.Name, s.schema, s.what()))
				continue
			}
			ct := typeOfColumn(*c)
			if err := types.AssignableTo(ct.WithOptional(false), f.Type.WithOptional(false)); err != nil {
				problems = append(problems, fmt.Sprintf("field %q (%s) does not fit column %q (%s) of %s: %v",
					f.Name, f.Type, c.Name, c.SQLType, s.what(), err))
				continue
			}
			if ct.Optional && !f.Type.Optional {
				s.log.Warn("postgres: nullable column read into a non-optional field", "column", c.Name)
			}
		}
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
	}
	return nil
}

func (s *source) what() string {
	if s.hasTable {
		return fmt.Sprintf("table %q", s.table.String())
	}
	return "the query"
}

// Type returns the record type the columns give.
func (s *source) Type() *types.Type {
	fields := make([]*types.Field, len(s.cols))
	for i, c := range s.cols {
		fields[i] = &types.Field{Name: c.Name, Type: typeOfColumn(c)}
	}
	return types.RecordOf(fields...)
}

func (s *source) from() string {
	if s.hasTable {
		return s.table.sql()
	}
	return "(" + s.query + ") AS pipe_q"
}

// Read returns the next batch of rows, polling once caught up.
func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	if s.task != 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.conn == nil && s.cols == nil {
		return nil, fmt.Errorf("postgres source %q: not open", s.stage)
	}
	b := s.backoff()
	for {
		if s.done {
			return nil, stdlib.ErrEndOfInput
		}
		if s.idle {
			t := time.NewTimer(s.poll)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		recs, err := s.fetch(ctx)
		if err == nil {
			b.Reset()
			s.noteLag(ctx, len(recs))
			if len(recs) > 0 {
				s.idle = false
				return recs, nil
			}
			if s.mode == modeBulk {
				s.done = true
				return nil, stdlib.ErrEndOfInput
			}
			s.idle = true
			continue
		}
		if !transient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("postgres source %q: %w", s.stage, err)
		}
		s.dropConn()
		if werr := b.Wait(ctx, err); werr != nil {
			return nil, fmt.Errorf("postgres source %q: %w", s.stage, werr)
		}
	}
}

// backoff paces the retries of one operation.
func (s *source) backoff() *retry.Backoff { return retry.New(s.retryTimeout, s.log, "postgres source") }

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
	switch s.mode {
	case modeIncrementing:
		sql := "SELECT * FROM " + s.from()
		args := []any{}
		if s.hasLast {
			sql += " WHERE " + quote(s.inc) + " > $1"
			args = append(args, s.last)
		}
		sql += " ORDER BY " + quote(s.inc) + fmt.Sprintf(" LIMIT %d", s.batch)
		return s.collect(ctx, sql, args, false)
	case modeTimestamp, modeTimestampIncrementing:
		return s.fetchTimestamp(ctx)
	}
	return s.fetchBulk(ctx)
}

func (s *source) fetchTimestamp(ctx context.Context) ([]stdlib.Record, error) {
	order := quote(s.ts)
	if s.mode == modeTimestampIncrementing {
		order += ", " + quote(s.inc)
	}
	conds := []string{quote(s.ts) + " < now() - make_interval(secs => $1)"}
	args := []any{s.delay.Seconds()}
	if s.hasLast {
		conds = append(conds, quote(s.ts)+" > $2")
		args = append(args, time.UnixMicro(s.last).UTC())
	}
	where := " WHERE " + strings.Join(conds, " AND ")
	sql := "SELECT * FROM " + s.from() + where + " ORDER BY " + order + fmt.Sprintf(" LIMIT %d", s.batch)
	recs, err := s.collect(ctx, sql, args, true)
	if err != nil || len(recs) < s.batch {
		return recs, err
	}
	// A full batch may end inside a group of rows sharing one timestamp:
	// keep whole groups only, so that a position covers its whole group.
	lastTS := recs[len(recs)-1].Pos.Offset
	n := len(recs)
	for n > 0 && recs[n-1].Pos.Offset == lastTS {
		n--
	}
	if n > 0 {
		return recs[:n], nil
	}
	// The whole batch is one group: read all of it.
	sql = "SELECT * FROM " + s.from() + " WHERE " + quote(s.ts) + " = $1 ORDER BY " + order
	return s.collect(ctx, sql, []any{time.UnixMicro(lastTS).UTC()}, true)
}

func (s *source) fetchBulk(ctx context.Context) ([]stdlib.Record, error) {
	if s.bulk == nil {
		sql := "SELECT * FROM " + s.from()
		if s.hasTable {
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
		s.ordinal = 0
	}
	var recs []stdlib.Record
	for len(recs) < s.batch && s.bulk.Next() {
		s.ordinal++
		if s.hasLast && s.ordinal <= s.last {
			continue
		}
		r, err := s.record(s.bulk, s.ordinal, false)
		if err != nil {
			s.bulk.Close()
			s.bulk = nil
			return nil, err
		}
		recs = append(recs, r)
	}
	if len(recs) < s.batch {
		err := s.bulk.Err()
		s.bulk.Close()
		s.bulk = nil
		if err != nil {
			return nil, err
		}
		s.done = true // the next Read ends the input
	}
	if len(recs) > 0 {
		s.last, s.hasLast = recs[len(recs)-1].Pos.Offset, true
	}
	return recs, nil
}

// collect runs sql and converts its rows; ts says the offset is the
// timestamp column in microseconds (else the incrementing column).
func (s *source) collect(ctx context.Context, sql string, args []any, ts bool) ([]stdlib.Record, error) {
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []stdlib.Record
	for rows.Next() {
		r, err := s.record(rows, 0, ts)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		s.last, s.hasLast = recs[len(recs)-1].Pos.Offset, true
	}
	return recs, nil
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
	m := make(map[string]any, len(vals))
	r := stdlib.Record{Partition: -1}
	off := ordinal
	for i, v := range vals {
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
		nv, err := fromColumn(c, v, raw)
		if err != nil {
			return stdlib.Record{}, fmt.Errorf("column %q: %w", c.Name, err)
		}
		m[c.Name] = nv
		switch {
		case s.mode == modeBulk:
		case ts && c.Name == s.ts:
			t, ok := nv.(time.Time)
			if !ok {
				return stdlib.Record{}, fmt.Errorf("timestamp column %q is null", s.ts)
			}
			off = t.UnixMicro()
			r.Time = t
		case !ts && c.Name == s.inc:
			n, ok := nv.(int64)
			if !ok {
				return stdlib.Record{}, fmt.Errorf("incrementing column %q is null", s.inc)
			}
			off = n
		}
	}
	r.Value = m
	r.Pos = stdlib.Position{Source: s.stage, Partition: s.partition, Offset: off}
	return r, nil
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
	if s.conn != nil {
		err := s.conn.Close(ctx)
		s.conn = nil
		if err != nil {
			return fmt.Errorf("postgres source %q: close: %w", s.stage, err)
		}
	}
	return nil
}
