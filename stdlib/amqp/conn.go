package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// Component is the name of the source and the sink: RabbitMQ, the broker
// users know (AMQP 1.0 is another protocol).
const Component = "rabbitmq"

// exchangeTypes are the exchange types a declaration may name.
var exchangeTypes = []string{"direct", "fanout", "topic", "headers"}

// connParams are the connection attributes shared by source and sink.
var connParams = []stdlib.Param{
	{Name: "url", Type: stdlib.String, Required: true, Secret: true,
		Doc: "amqp://user:password@host:5672/vhost, or amqps:// for TLS; user and password percent-encoded (a ${env:…} reference is)"},
	tlsParam,
	{Name: "heartbeat", Type: stdlib.Duration, Default: 10 * time.Second,
		Doc: "AMQP heartbeat interval: a dead connection is noticed after about twice this"},
	retry.Param,
}

// queueTypes are the queue types a declaration may name.
var queueTypes = []string{"classic", "quorum"}

// declareQueueParams are the attributes of a queue declaration.
var declareQueueParams = []stdlib.Param{
	{Name: "type", Type: stdlib.Enum(queueTypes...), Default: stdlib.Ident("classic"), Doc: "queue type (x-queue-type)"},
	{Name: "durable", Type: stdlib.Bool, Default: true, Doc: "the queue survives a broker restart (and keeps persistent messages)"},
}

// checkConn checks the connection attributes.
func checkConn(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	if u, ok := attrs["url"].(string); ok && !strings.Contains(u, "${") {
		if _, err := parseURL(u); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "url", Message: err.Error()})
		}
	}
	errs = append(errs, tlsconf.Check(attrs)...)
	if d, ok := attrs["heartbeat"].(time.Duration); ok && d < time.Second {
		errs = append(errs, stdlib.AttrError{Attr: "heartbeat", Message: "heartbeat must be at least 1s"})
	}
	return append(errs, retry.Check(attrs)...)
}

// parseURL parses an AMQP URL. Its error never holds the URL, which may
// hold a password.
func parseURL(u string) (amqp.URI, error) {
	uri, err := amqp.ParseURI(u)
	if err != nil {
		return uri, errors.New("not an amqp:// or amqps:// URL (a user or password with reserved characters must be percent-encoded)")
	}
	return uri, nil
}

// conn is a resolved connection configuration.
type conn struct {
	url   string
	where string // scheme://host:port/vhost, for messages: no credentials
	cfg   amqp.Config
	retry time.Duration
}

func newConn(cfg stdlib.Config) (*conn, error) {
	u := cfg.String("url")
	uri, err := parseURL(u)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	c := &conn{
		url:   u,
		where: fmt.Sprintf("%s://%s/%s", uri.Scheme, net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), url.PathEscape(strings.TrimPrefix(uri.Vhost, "/"))),
		retry: cfg.Duration(retry.Param.Name),
		cfg: amqp.Config{
			Heartbeat:  cfg.Duration("heartbeat"),
			Properties: amqp.Table{"connection_name": cfg.Pipeline + "/" + cfg.Stage, "product": "pipe"},
			Dial:       amqp.DefaultDial(30 * time.Second),
		},
	}
	if t, ok := cfg.Block("tls"); ok {
		if uri.Scheme != "amqps" {
			return nil, errors.New("tls is set but the url is not amqps://")
		}
		tc, err := tlsconf.Client(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.cfg.TLSClientConfig = tc
	}
	return c, nil
}

func (c *conn) backoff(log *slog.Logger, what string) *retry.Backoff {
	return retry.New(c.retry, log, what)
}

// dial opens a connection and a channel on it.
func (c *conn) dial() (*amqp.Connection, *amqp.Channel, error) {
	cfg := c.cfg
	if cfg.TLSClientConfig != nil {
		cfg.TLSClientConfig = cfg.TLSClientConfig.Clone() // the client sets ServerName
	}
	cn, err := amqp.DialConfig(c.url, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.where, err)
	}
	ch, err := cn.Channel()
	if err != nil {
		cn.Close()
		return nil, nil, fmt.Errorf("open channel on %s: %w", c.where, err)
	}
	return cn, ch, nil
}

// dialRetry dials until it succeeds, fails for good or b gives up; setup
// runs on each new channel (declarations, QoS, confirm mode) and may fail
// with a transient error too.
func (c *conn) dialRetry(ctx context.Context, b *retry.Backoff, setup func(*amqp.Channel) error) (cn *amqp.Connection, ch *amqp.Channel, err error) {
	err = retry.Do(ctx, b, transient, func() error {
		var err error
		cn, ch, err = c.dial()
		if err == nil {
			if err = setup(ch); err != nil {
				cn.Close()
			}
		}
		return err
	})
	return cn, ch, err
}

// transient reports whether err is worth retrying on a new connection: the
// network, a server going down (connection forced, 320), a closed
// channel or connection, or an internal or resource error of the
// server; not refused credentials, a missing queue or a declaration
// at odds with what exists.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if retry.Network(err) {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.ConnectionForced, amqp.FrameError, amqp.ChannelError, amqp.UnexpectedFrame, amqp.ResourceError, amqp.InternalError:
			return true
		}
		return false
	}
	return errors.Is(err, amqp.ErrClosed)
}

// declare runs the declarations of a stage on ch: an exchange, a queue
// and the queue's bindings to the exchange, each when asked.
type declaration struct {
	exchange     string // "" for none
	exchangeType string
	exchangeDur  bool
	queue        string // "" for none
	queueType    string
	queueDur     bool
	bindTo       string // exchange the queue is bound to, "" for none
	bindKeys     []string
}

func (d *declaration) run(ch *amqp.Channel) error {
	if d.exchange != "" {
		if err := ch.ExchangeDeclare(d.exchange, d.exchangeType, d.exchangeDur, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q: %w", d.exchange, err)
		}
	}
	if d.queue != "" {
		args := amqp.Table{"x-queue-type": d.queueType}
		if _, err := ch.QueueDeclare(d.queue, d.queueDur, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %q: %w", d.queue, err)
		}
	}
	if d.bindTo != "" {
		for _, k := range d.bindKeys {
			if err := ch.QueueBind(d.queue, k, d.bindTo, false, nil); err != nil {
				return fmt.Errorf("bind queue %q to exchange %q with %q: %w", d.queue, d.bindTo, k, err)
			}
		}
	}
	return nil
}

// headers converts record headers to an AMQP table.
func headerTable(hs []stdlib.Header, extra map[string]any) amqp.Table {
	if len(hs) == 0 && len(extra) == 0 {
		return nil
	}
	t := make(amqp.Table, len(hs)+len(extra))
	for _, h := range hs {
		t[h.Key] = string(h.Value)
	}
	for k, v := range extra {
		t[k] = v
	}
	return t
}

// tlsParam is the shared tls block, for an amqps:// url.
var tlsParam = func() stdlib.Param {
	p := tlsconf.Param
	p.Doc = "TLS settings of an amqps:// url"
	return p
}()
