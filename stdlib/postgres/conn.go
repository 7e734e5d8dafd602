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

// dsnParam is the connection string attribute of the source and the sink.
var dsnParam = stdlib.Param{Name: "dsn", Type: stdlib.String, Required: true, Secret: true,
	Doc: "connection string: postgres://user:pass@host:5432/db?sslmode=... (a literal @ or / in user or pass written %40, %2F; a ${env:...} there is encoded for you) or key=value form"}

// connect opens one connection. Callers retry its transient failures
// (server down, starting up, restarting) with a [retry.Backoff].
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	// Timestamps without time zone are read and written as UTC.
	cfg.RuntimeParams["timezone"] = "UTC"
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// disconnect closes *conn, if open, and forgets it.
func disconnect(ctx context.Context, conn **pgx.Conn) error {
	if *conn == nil {
		return nil
	}
	err := (*conn).Close(ctx)
	*conn = nil
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// parseDSN parses a connection string. Its errors never show it, nor any
// piece of it: it usually holds a password.
func parseDSN(dsn string) (*pgx.ConnConfig, error) {
	// In a URL, the user-info ends at the first "@" (before any "/"), as in
	// libpq: the rest of a password holding "@" or "/" would be taken for
	// the host or the database, and shown in connection errors.
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		if rest, ok := strings.CutPrefix(dsn, scheme); ok {
			if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
				rest = rest[i+1:]
			}
			if hostDB, _, _ := strings.Cut(rest, "?"); strings.Contains(hostDB, "@") {
				return nil, errors.New(`invalid dsn: "@" in its host or database name: write "@" in the user or password as %40 and "/" as %2F`)
			}
		}
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("invalid dsn: cannot parse connection string (in a URL, write \"%\" in the user or password as %25; in key=value form, quote a value holding blanks: password='...')")
	}
	return cfg, nil
}

// transient reports whether err is a failure of the connection or of the
// server's availability (as opposed to a problem with the statement or the
// data), after which reconnecting and replaying the transaction may succeed.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // admin/crash shutdown, cannot connect now
			return true
		case pe.Code == "40001", pe.Code == "40P01": // serialization failure, deadlock
			return true
		case pe.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.As(err, &ce) ||
		retry.Network(err) || strings.Contains(err.Error(), "conn closed")
}

// recordError reports whether err is the server rejecting a row for its
// content: a data exception (class 22) or an integrity constraint violation
// (class 23).
func recordError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// tableName is a table, schema-qualified or not.
type tableName struct {
	Schema string // "" until resolved
	Name   string
}

func parseTable(s string) (tableName, error) {
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if p == "" {
			return tableName{}, fmt.Errorf("invalid table name %q", s)
		}
	}
	switch len(parts) {
	case 1:
		return tableName{Name: parts[0]}, nil
	case 2:
		return tableName{Schema: parts[0], Name: parts[1]}, nil
	}
	return tableName{}, fmt.Errorf("invalid table name %q: want table or schema.table", s)
}

// ident returns the table as a pgx identifier.
func (t tableName) ident() pgx.Identifier {
	if t.Schema == "" {
		return pgx.Identifier{t.Name}
	}
	return pgx.Identifier{t.Schema, t.Name}
}

// sql returns the quoted, qualified name.
func (t tableName) sql() string { return t.ident().Sanitize() }

func (t tableName) String() string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// quote quotes one identifier.
func quote(name string) string { return pgx.Identifier{name}.Sanitize() }

// column is one column of a table as the catalog describes it.
type column struct {
	Name       string
	Type       string // udt_name: int8, text, timestamptz, _int4, ...
	SQLType    string // format_type: bigint, character varying(20), ...
	BaseType   string // format_type without modifiers: character varying
	Nullable   bool
	HasDefault bool
	MaxLen     int             // character_maximum_length, 0 if none
	Class      sqlcommon.Class // classOf(Type)
}

// queryer is what both a connection and a transaction offer.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// resolveSchema fills t.Schema with the current schema when it is empty.
func resolveSchema(ctx context.Context, q queryer, t tableName) (tableName, error) {
	if t.Schema != "" {
		return t, nil
	}
	if err := q.QueryRow(ctx, "SELECT current_schema()").Scan(&t.Schema); err != nil {
		return t, fmt.Errorf("read current schema: %w", err)
	}
	return t, nil
}

// readColumns returns the columns of t in order; none if t does not exist.
func readColumns(ctx context.Context, q queryer, t tableName) ([]column, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL), NOT a.attnotnull, a.atthasdef,
       COALESCE(information_schema._pg_char_max_length(a.atttypid, a.atttypmod), 0)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", t.String(), err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		var maxLen int32
		err := r.Scan(&c.Name, &c.Type, &c.SQLType, &c.BaseType, &c.Nullable, &c.HasDefault, &maxLen)
		c.MaxLen = int(maxLen)
		c.Class = classOf(c.Type)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", t.String(), err)
	}
	return cols, nil
}

// primaryKey returns the primary key columns of t in key order.
func primaryKey(ctx context.Context, q queryer, t tableName) ([]string, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
ORDER BY k.ord`, t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("read primary key of %q: %w", t.String(), err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// TableType returns the type of the rows of table (schema.table, or a
// table on the search path) as the postgres and postgres_cdc sources read
// them: a field per column in the table's order, optional where the column
// may be null. `pipe schema pull --postgres` writes it for the compiler.
func TableType(ctx context.Context, dsn, table string) (*types.Type, error) {
	t, err := parseTable(table)
	if err != nil {
		return nil, err
	}
	conn, err := connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if t, err = resolveSchema(ctx, conn, t); err != nil {
		return nil, err
	}
	cols, err := readColumns(ctx, conn, t)
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("table %q not found", t.String())
	}
	fields := make([]*types.Field, len(cols))
	for i, c := range cols {
		fields[i] = &types.Field{Name: c.Name, Type: typeOfColumn(c)}
	}
	return types.RecordOf(fields...), nil
}
