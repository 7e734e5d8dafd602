package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// connParams are the connection attributes shared by source and sink.
var connParams = []stdlib.Param{
	{Name: "addr", Type: stdlib.String, Default: "127.0.0.1:6379", Doc: "server address, host:port"},
	{Name: "username", Type: stdlib.String, Doc: "ACL user (Redis 6+); without it the password authenticates the default user"},
	{Name: "password", Type: stdlib.String, Secret: true, Doc: "password of username, or of the default user"},
	{Name: "db", Type: stdlib.Int, Default: int64(0), Doc: "database number (SELECT)"},
	tlsconf.Param,
	{Name: "timeout", Type: stdlib.Duration, Default: 10 * time.Second, Doc: "longest one command waits for its answer (a blocking read waits max_wait more)"},
	retry.Param,
}

// checkConn reports connection attributes out of range.
func checkConn(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	if n, ok := attrs["db"].(int64); ok && n < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "db", Message: "db must not be negative"})
	}
	errs = append(errs, stdlib.Positive(attrs, "timeout")...)
	errs = append(errs, tlsconf.Check(attrs)...)
	return append(errs, retry.Check(attrs)...)
}

// The client's own log would print what the connector logs already
// (with retry_timeout's pacing), on standard error.
func init() { goredis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// conn is a resolved connection configuration.
type conn struct {
	opts  *goredis.Options
	retry time.Duration
	what  string // "redis source", "redis sink": for logs
	log   *slog.Logger
}

func newConn(cfg stdlib.Config, what string) (*conn, error) {
	c := &conn{retry: cfg.Duration(retry.Param.Name), what: what, log: cfg.Log()}
	timeout := cfg.Duration("timeout")
	c.opts = &goredis.Options{
		Addr:         cfg.String("addr"),
		Username:     cfg.String("username"),
		Password:     cfg.String("password"),
		DB:           int(cfg.Int("db")),
		ClientName:   "pipe",
		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		// Retries are paced by retry_timeout, and a write sent twice is
		// not for the client to decide.
		MaxRetries:    -1,
		DialerRetries: 1,
		PoolSize:      4,
		// RESP2: the answers used here read the same and need no HELLO.
		Protocol:              2,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	}
	if c.opts.Addr == "" {
		return nil, errors.New("addr is empty")
	}
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsconf.Client(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.opts.TLSConfig = tc
	}
	return c, nil
}

// client returns a new client of the connection.
func (c *conn) client() *goredis.Client { return goredis.NewClient(c.opts) }

// backoff returns a Backoff for retry_timeout, logging as the connection.
func (c *conn) backoff() *retry.Backoff { return retry.New(c.retry, c.log, c.what) }

// do runs op until it succeeds or fails with an error that retrying does
// not cure, reconnecting with backoff until retry_timeout: after a
// failure *cl is replaced by a new client, since the connections its pool
// keeps may all have died with the server.
func (c *conn) do(ctx context.Context, cl **goredis.Client, op func() error) error {
	b := c.backoff()
	for {
		err := op()
		if err == nil {
			b.Reset()
			return nil
		}
		if ctx.Err() != nil || !transient(err) {
			return err
		}
		c.renew(cl)
		if werr := b.Wait(ctx, err); werr != nil {
			return werr
		}
	}
}

// renew replaces *cl by a new client of the connection.
func (c *conn) renew(cl **goredis.Client) {
	if *cl != nil {
		(*cl).Close()
	}
	*cl = c.client()
}

// transient reports whether err is a connection that failed or broke, or
// a server that is not ready yet (loading its data, a replica without its
// master): retrying later may succeed.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if retry.Network(err) || errors.Is(err, goredis.ErrClosed) || errors.Is(err, goredis.ErrPoolTimeout) {
		return true
	}
	var re goredis.Error
	if errors.As(err, &re) {
		for _, p := range []string{"LOADING", "BUSY ", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY"} {
			if strings.HasPrefix(re.Error(), p) {
				return true
			}
		}
	}
	return false
}

// recordError reports whether err is the server's refusal of one command
// on its own merits (WRONGTYPE, a value out of range, an ACL rule on a
// key), not of the connection, the server's state or the user.
func recordError(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) || transient(err) {
		return false
	}
	msg := re.Error()
	for _, p := range []string{"OOM", "NOAUTH", "WRONGPASS", "NOSCRIPT", "MISCONF", "EXECABORT"} {
		if strings.HasPrefix(msg, p) {
			return false
		}
	}
	return true
}
