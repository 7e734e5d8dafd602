package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// connParams are the connection attributes every component of the
// package takes.
var connParams = []stdlib.Param{
	{Name: "url", Type: stdlib.String, Required: true, Doc: "server URLs, comma-separated: nats://host:4222 (tls:// for TLS); credentials go in user/password, token, nkey_seed or creds, not in the URL"},
	{Name: "name", Type: stdlib.String, Default: "pipe", Doc: "connection name shown by the server"},
	{Name: "user", Type: stdlib.String, Doc: "user name (with password)"},
	{Name: "password", Type: stdlib.String, Secret: true, Doc: "password (with user)"},
	{Name: "token", Type: stdlib.String, Secret: true, Doc: "authentication token"},
	{Name: "nkey_seed", Type: stdlib.String, Secret: true, Doc: "NKey seed (SU...) to sign the server's challenge with"},
	{Name: "creds", Type: stdlib.String, Doc: "path of a .creds file holding a user JWT and its NKey seed"},
	tlsconf.Param,
	retry.Param,
}

// checkConn reports connection attributes that exclude each other.
func checkConn(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	_, user := attrs["user"]
	_, pass := attrs["password"]
	if user != pass {
		errs = append(errs, stdlib.AttrError{Attr: "password", Message: "user and password must be set together"})
	}
	n := 0
	for _, a := range []string{"user", "token", "nkey_seed", "creds"} {
		if _, ok := attrs[a]; ok {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, stdlib.AttrError{Attr: "token", Message: "set one of user/password, token, nkey_seed and creds"})
	}
	if u, ok := attrs["url"].(string); ok && strings.Contains(u, "@") && !strings.Contains(u, "${") {
		errs = append(errs, stdlib.AttrError{Attr: "url", Message: "url holds credentials: set them in user/password or token (secrets)"})
	}
	errs = append(errs, tlsconf.Check(attrs)...)
	return append(errs, retry.Check(attrs)...)
}

// conn is a resolved connection configuration.
type conn struct {
	url   string
	opts  []nats.Option
	retry time.Duration // retry_timeout
}

func newConn(cfg stdlib.Config) (*conn, error) {
	c := &conn{url: cfg.String("url"), retry: cfg.Duration(retry.Param.Name)}
	if strings.TrimSpace(c.url) == "" {
		return nil, errors.New("url is empty")
	}
	c.opts = []nats.Option{
		nats.Name(cfg.String("name")),
		// The client reconnects by itself, forever; operations that fail
		// meanwhile are retried with backoff until retry_timeout.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		// Nothing is buffered while disconnected: a publish fails and is
		// retried, so that no message waits unseen in the client.
		nats.ReconnectBufSize(-1),
		nats.Timeout(5 * time.Second),
	}
	if u := cfg.String("user"); u != "" {
		c.opts = append(c.opts, nats.UserInfo(u, cfg.String("password")))
	}
	if t := cfg.String("token"); t != "" {
		c.opts = append(c.opts, nats.Token(t))
	}
	if seed := cfg.String("nkey_seed"); seed != "" {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
		if err != nil {
			return nil, errors.New("nkey_seed: not an NKey seed")
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, errors.New("nkey_seed: not an NKey seed")
		}
		c.opts = append(c.opts, nats.Nkey(pub, kp.Sign))
	}
	if p := cfg.String("creds"); p != "" {
		c.opts = append(c.opts, nats.UserCredentials(p))
	}
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsconf.Client(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.opts = append(c.opts, nats.Secure(tc))
	}
	return c, nil
}

// backoff returns a fresh backoff for one component's retries.
func (c *conn) backoff(log *slog.Logger, what string) *retry.Backoff {
	return retry.New(c.retry, log, what)
}

// connect opens a connection, retrying an unreachable server with backoff
// until retry_timeout. The client reconnects by itself after that; log
// hears of each disconnection and reconnection.
func (c *conn) connect(ctx context.Context, log *slog.Logger, what string) (*nats.Conn, error) {
	opts := append(c.opts,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn(what+": disconnected; reconnecting", "error", err.Error())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info(what+": reconnected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn(what+": asynchronous error", "error", err.Error())
		}),
	)
	var nc *nats.Conn
	err := retry.Do(ctx, c.backoff(log, what), transient, func() error {
		var err error
		nc, err = nats.Connect(c.url, opts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return nc, nil
}

// transient reports whether err is worth retrying: the server is away or
// restarting, the connection is being re-established, or JetStream did
// not answer in time or is not ready yet.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if retry.Network(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, e := range []error{nats.ErrNoServers, nats.ErrTimeout, nats.ErrConnectionReconnecting,
		nats.ErrDisconnected, nats.ErrNoResponders, nats.ErrReconnectBufExceeded, nats.ErrStaleConnection,
		nats.ErrConnectionDraining, jetstream.ErrServerShutdown, jetstream.ErrNoHeartbeat, jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrJetStreamNotEnabledForAccount, jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout} {
		if errors.Is(err, e) {
			return true
		}
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		// 503: JetStream is not available yet (restarting, no quorum).
		return api.Code == 503 || api.ErrorCode == 10008 // JetStream system temporarily unavailable
	}
	return false
}

// stage is what the JetStream sink and source both keep of their
// configuration.
type stage struct {
	cfg    stdlib.Config
	log    *slog.Logger
	conn   *conn
	stream string
}

// newStage returns the stage of cfg, whose attributes check finds sound.
func newStage(cfg stdlib.Config, check func(map[string]any) []stdlib.AttrError) (stage, error) {
	cn, err := newConn(cfg)
	if err != nil {
		return stage{}, err
	}
	if errs := check(cfg.Attrs); len(errs) > 0 {
		return stage{}, errors.New(errs[0].Message)
	}
	return stage{cfg: cfg, log: cfg.Log(), conn: cn, stream: cfg.String("stream")}, nil
}
