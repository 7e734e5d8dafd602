package mysql

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// connParams are the connection attributes of the source and the sink.
var connParams = []stdlib.Param{
	{Name: "dsn", Type: stdlib.String, Required: true, Secret: true,
		Doc: "data source name: user:pass@tcp(host:3306)/db?param=value (the Go MySQL driver's form; a password may instead be given by `password`)"},
	{Name: "password", Type: stdlib.String, Secret: true, Doc: "the user's password, replacing the one in dsn"},
	tlsParam,
}

// tlsParam is the shared tls block; a dsn's tls parameter works too.
var tlsParam = func() stdlib.Param {
	p := tlsconf.Param
	p.Doc = "connect with TLS, the server name defaulting to the dsn's host (a dsn's tls=true|skip-verify|preferred works too)"
	return p
}()

// checkConn checks what the compiler can of the connection attributes: a
// dsn written without references must parse and name a database, and a
// client certificate goes with its key. Messages never show the dsn.
func checkConn(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	if dsn, ok := attrs["dsn"].(string); ok && !strings.Contains(dsn, "${") {
		if c, err := mysql.ParseDSN(dsn); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "dsn", Message: "invalid dsn: want user:pass@tcp(host:3306)/db?param=value"})
		} else if c.DBName == "" {
			errs = append(errs, stdlib.AttrError{Attr: "dsn", Message: "the dsn names no database: user:pass@tcp(host:3306)/db"})
		}
	}
	return append(errs, tlsconf.Check(attrs)...)
}

// connConfig is a resolved connection configuration. Its String never
// shows the password.
type connConfig struct {
	cfg    *mysql.Config
	secret []string // what errors must not show
}

func (c *connConfig) String() string { return c.cfg.User + "@" + c.cfg.Addr + "/" + c.cfg.DBName }

// quietLogger drops the driver's own log lines: errors are returned.
type quietLogger struct{}

func (quietLogger) Print(...any) {}

// newConnConfig reads the connection attributes. Its errors never show the
// dsn nor the password.
func newConnConfig(cfg stdlib.Config) (*connConfig, error) {
	dsn := cfg.String("dsn")
	if dsn == "" {
		return nil, errors.New("dsn is empty")
	}
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, errors.New("invalid dsn: cannot parse it (want user:pass@tcp(host:3306)/db?param=value; write a password holding \"@\" or \"/\" with the password attribute)")
	}
	cc := &connConfig{cfg: c, secret: []string{dsn}}
	if p := cfg.String("password"); p != "" {
		c.Passwd = p
	}
	if c.Passwd != "" {
		cc.secret = append(cc.secret, c.Passwd)
	}
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsConfig(t, c.Addr)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.TLS = tc
		if k := t.String("key"); k != "" {
			cc.secret = append(cc.secret, k)
		}
	}
	// Values are read and written as UTC: DATETIME columns hold UTC.
	c.ParseTime = true
	c.Loc = time.UTC
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	c.Params["time_zone"] = "'+00:00'"
	// Placeholders are filled in by the client: one round trip per
	// statement and no limit of 65,535 arguments.
	c.InterpolateParams = true
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	c.Logger = quietLogger{}
	if c.DBName == "" {
		return nil, errors.New("invalid dsn: no database (user:pass@tcp(host:3306)/db)")
	}
	return cc, nil
}

// open returns a pool of connections to the server (nothing is dialled
// until used).
func (c *connConfig) open() (*sql.DB, error) {
	conn, err := mysql.NewConnector(c.cfg)
	if err != nil {
		return nil, c.redact(err)
	}
	db := sql.OpenDB(conn)
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// close closes the pool *db, if open, and forgets it.
func (c *connConfig) close(db **sql.DB) error {
	if *db == nil {
		return nil
	}
	err := (*db).Close()
	*db = nil
	if err != nil {
		return fmt.Errorf("close: %w", c.redact(err))
	}
	return nil
}

// redact replaces the secrets err's text may hold.
func (c *connConfig) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	hit := false
	for _, s := range c.secret {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "<redacted>")
			hit = true
		}
	}
	if !hit {
		return err
	}
	return redacted{msg: msg, err: err}
}

// redacted is an error whose text hides a secret; errors.Is and As still
// see the cause.
type redacted struct {
	msg string
	err error
}

func (r redacted) Error() string { return r.msg }
func (r redacted) Unwrap() error { return r.err }

// tlsConfig is the tls block's configuration, the server name defaulting
// to the host of addr.
func tlsConfig(t stdlib.Config, addr string) (*tls.Config, error) {
	tc, err := tlsconf.Client(t)
	if err != nil {
		return nil, err
	}
	if tc.ServerName == "" {
		tc.ServerName = addr
		if i := strings.LastIndexByte(addr, ':'); i >= 0 {
			tc.ServerName = addr[:i]
		}
	}
	return tc, nil
}

// MySQL and MariaDB error numbers the connector tells apart.
const (
	erLockWaitTimeout  = 1205
	erDeadlock         = 1213
	erTooManyConns     = 1040
	erServerShutdown   = 1053
	erConnKilled       = 1927 // MariaDB: connection was killed
	erQueryInterrupted = 1317
	erUnknownThread    = 1094
	erTableExists      = 1050
)

// transient reports whether err is a failure of the connection or of the
// server's availability, after which reconnecting and replaying the
// transaction may succeed.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erLockWaitTimeout, erDeadlock, erTooManyConns, erServerShutdown, erConnKilled, erQueryInterrupted:
			return true
		}
		// 2xxx are client errors (lost connection ...); 1152..1161
		// network errors of the server.
		return me.Number >= 2000 && me.Number < 3000 || me.Number >= 1152 && me.Number <= 1161
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || retry.Network(err) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "broken pipe")
}

// recordError reports whether err is the server rejecting a row for its
// content: a value too long, out of range or of the wrong kind, a NULL in
// a NOT NULL column, a duplicate key, a foreign key or CHECK violation.
func recordError(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1048, // column cannot be null
		1062, 1586, // duplicate entry
		1264, 1690, // out of range
		1265, 1292, 1366, 1367, // truncated or incorrect value
		1406,                   // data too long
		1451, 1452, 1216, 1217, // foreign key
		3819, 4025, // CHECK constraint (MySQL, MariaDB)
		3140,       // invalid JSON (MySQL)
		1644,       // raised by a trigger (SIGNAL)
		1364,       // field has no default
		1411, 1441: // incorrect/out of range datetime
		return true
	}
	return false
}

// rowError is the server's verdict on one row, without the statement.
func rowError(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Errorf("rejected by the database: %s (error %d)", me.Message, me.Number)
	}
	return err
}

// tableName is a table, in a database or not.
type tableName struct {
	DB   string // "" until resolved
	Name string
}

func parseTable(s string) (tableName, error) {
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if p == "" || strings.ContainsRune(p, 0) {
			return tableName{}, fmt.Errorf("invalid table name %q", s)
		}
		if utf8.RuneCountInString(p) > 64 && !strings.Contains(p, "${") {
			return tableName{}, fmt.Errorf("invalid table name %q: a name has at most 64 characters", s)
		}
	}
	switch len(parts) {
	case 1:
		return tableName{Name: parts[0]}, nil
	case 2:
		return tableName{DB: parts[0], Name: parts[1]}, nil
	}
	return tableName{}, fmt.Errorf("invalid table name %q: want table or database.table", s)
}

// sql returns the quoted, qualified name.
func (t tableName) sql() string {
	if t.DB == "" {
		return quote(t.Name)
	}
	return quote(t.DB) + "." + quote(t.Name)
}

func (t tableName) String() string {
	if t.DB == "" {
		return t.Name
	}
	return t.DB + "." + t.Name
}

// quote quotes one identifier.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// queryer is what a connection, a pool and a transaction offer.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// resolveDB fills t.DB with the current database when it is empty.
func resolveDB(ctx context.Context, q queryer, t tableName) (tableName, error) {
	if t.DB != "" {
		return t, nil
	}
	var db sql.NullString
	if err := q.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&db); err != nil {
		return t, fmt.Errorf("read current database: %w", err)
	}
	if !db.Valid {
		return t, errors.New("no database selected: name it in dsn or table")
	}
	t.DB = db.String
	return t, nil
}

// tableID returns InnoDB's id of table t, which stays when the table is
// renamed or altered in place and changes when it is dropped and created
// again; 0 if the table does not exist, or the id cannot be read (another
// engine, or no PROCESS privilege).
func tableID(ctx context.Context, q queryer, t tableName) (uint64, error) {
	var id uint64
	err := q.QueryRowContext(ctx, `SELECT TABLE_ID FROM information_schema.INNODB_SYS_TABLES WHERE NAME = ?`,
		t.DB+"/"+t.Name).Scan(&id)
	if err == nil {
		return id, nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) && !transient(err) {
		// MySQL 8: INNODB_TABLES; or no privilege.
		err = q.QueryRowContext(ctx, `SELECT TABLE_ID FROM information_schema.INNODB_TABLES WHERE NAME = ?`,
			t.DB+"/"+t.Name).Scan(&id)
		if err == nil || errors.Is(err, sql.ErrNoRows) || errors.As(err, &me) && !transient(err) {
			return id, nil
		}
	}
	return 0, fmt.Errorf("read the id of table %q: %w", t.String(), err)
}

// dropConn closes c, discarding its connection rather than returning it
// to the pool: after a failure its state is unknown.
func dropConn(c *sql.Conn) {
	if c == nil {
		return
	}
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	_ = c.Close()
}
