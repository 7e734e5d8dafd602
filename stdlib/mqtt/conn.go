package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// connParams are the connection attributes shared by source and sink.
var connParams = []stdlib.Param{
	{Name: "brokers", Type: stdlib.ListOf(stdlib.String), Required: true,
		Doc: "brokers, tried in order: host:port or a URL (tcp://, ssl://, ws://, wss://); host:port is tcp:// (ssl:// with tls)"},
	{Name: "client_id", Type: stdlib.String,
		Doc: "client identifier, the key of the broker's session (default pipe-<pipeline>-<stage>; -<task> is appended with tasks > 1); one process at a time may use it"},
	{Name: "username", Type: stdlib.String, Doc: "user name to authenticate with"},
	{Name: "password", Type: stdlib.String, Secret: true, Doc: "password to authenticate with (with username)"},
	{Name: "tls", Type: stdlib.Block(
		stdlib.Param{Name: "ca", Type: stdlib.String, Doc: "CA certificates: a PEM file path or PEM text"},
		stdlib.Param{Name: "cert", Type: stdlib.String, Doc: "client certificate: a PEM file path or PEM text"},
		stdlib.Param{Name: "key", Type: stdlib.String, Secret: true, Doc: "client key: a PEM file path or PEM text"},
		stdlib.Param{Name: "server_name", Type: stdlib.String, Doc: "name to verify the broker certificate against"},
		stdlib.Param{Name: "insecure_skip_verify", Type: stdlib.Bool, Default: false, Doc: "do not verify the broker certificate (unsafe)"},
	), Doc: "connect with TLS"},
	{Name: "keep_alive", Type: stdlib.Duration, Default: 30 * time.Second, Doc: "interval of the keep-alive pings; a broker silent for longer is taken as lost"},
	{Name: "connect_timeout", Type: stdlib.Duration, Default: 10 * time.Second, Doc: "longest a connection attempt waits for the broker's answer"},
	{Name: "format", Type: stdlib.Enum("json", "string", "bytes"), Default: stdlib.Ident("json"), Doc: "payload format"},
	retry.Param,
}

// checkConn checks the connection attributes and qos (valid for this
// component: 1 or 2 for the source, 0 to 2 for the sink).
func checkConn(attrs map[string]any, minQoS int64) []stdlib.AttrError {
	errs := retry.Check(attrs)
	if q, ok := attrs["qos"].(int64); ok && (q < minQoS || q > 2) {
		errs = append(errs, stdlib.AttrError{Attr: "qos", Message: fmt.Sprintf("qos must be %d to 2, not %d", minQoS, q)})
	}
	if _, ok := attrs["password"]; ok {
		if _, ok := attrs["username"]; !ok {
			errs = append(errs, stdlib.AttrError{Attr: "password", Message: "password needs username"})
		}
	}
	errs = append(errs, stdlib.Positive(attrs, "keep_alive", "connect_timeout")...)
	if d, ok := attrs["keep_alive"].(time.Duration); ok && d > 0 && (d < time.Second || d > 65535*time.Second) {
		errs = append(errs, stdlib.AttrError{Attr: "keep_alive", Message: "keep_alive must be 1s to 18h12m15s (whole seconds on the wire)"})
	}
	if t, ok := attrs["tls"].(map[string]any); ok {
		_, c := t["cert"]
		_, k := t["key"]
		if c != k {
			errs = append(errs, stdlib.AttrError{Attr: "tls.cert", Message: "tls cert and key must be set together"})
		}
	}
	if bs, ok := attrs["brokers"].([]any); ok {
		for _, b := range bs {
			if s, ok := b.(string); ok && !strings.Contains(s, "${") {
				if _, err := brokerURL(s, false); err != nil {
					errs = append(errs, stdlib.AttrError{Attr: "brokers", Message: err.Error()})
				}
			}
		}
	}
	return errs
}

// brokerURL reads one broker: a URL of a scheme paho dials, or host:port.
func brokerURL(s string, tls bool) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		scheme := "tcp"
		if tls {
			scheme = "ssl"
		}
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("broker %q: %v", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps", "ws", "wss":
	default:
		return nil, fmt.Errorf("broker %q: unknown scheme %q (tcp, ssl, ws, wss)", s, u.Scheme)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("broker %q: no port", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("broker %q: set username and password as attributes, not in the URL", u.Host)
	}
	return u, nil
}

// conn is a resolved connection configuration.
type conn struct {
	brokers   []*url.URL
	clientID  string
	username  string
	password  string
	tls       *tls.Config
	keepAlive time.Duration
	timeout   time.Duration
	retry     time.Duration // retry_timeout
	log       *slog.Logger
}

func newConn(cfg stdlib.Config) (*conn, error) {
	c := &conn{
		clientID:  cfg.String("client_id"),
		username:  cfg.String("username"),
		password:  cfg.String("password"),
		keepAlive: cfg.Duration("keep_alive"),
		timeout:   cfg.Duration("connect_timeout"),
		retry:     cfg.Duration(retry.Param.Name),
		log:       cfg.Log(),
	}
	if c.clientID == "" {
		c.clientID = "pipe-" + cfg.Pipeline + "-" + cfg.Stage
	}
	if cfg.Tasks > 1 {
		c.clientID += "-" + strconv.Itoa(cfg.Task)
	}
	if len(c.clientID) > 65535 {
		return nil, errors.New("client_id longer than 65535 bytes")
	}
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsconf.Client(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.tls = tc
	}
	withTLS := c.tls != nil
	for _, b := range cfg.Strings("brokers") {
		for _, p := range strings.Split(b, ",") {
			if strings.TrimSpace(p) == "" {
				continue
			}
			u, err := brokerURL(p, withTLS)
			if err != nil {
				return nil, err
			}
			c.brokers = append(c.brokers, u)
		}
	}
	if len(c.brokers) == 0 {
		return nil, errors.New("no brokers")
	}
	return c, nil
}

// identity names what the source's session lives in: the first broker
// and the client id.
func (c *conn) identity() string {
	return "mqtt://" + c.brokers[0].Host + "/" + c.clientID
}

// options returns paho's options for one connection: no reconnecting of
// its own (the components reconnect through stdlib/retry), a session kept
// across connections (clean session false) or not. lost is called when an
// established connection breaks.
func (c *conn) options(persistent bool, lost func(error)) *paho.ClientOptions {
	o := paho.NewClientOptions()
	for _, u := range c.brokers {
		o.AddBroker(u.String())
	}
	o.SetClientID(c.clientID).
		SetCleanSession(!persistent).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(c.timeout).
		SetKeepAlive(c.keepAlive).
		SetPingTimeout(c.timeout).
		SetWriteTimeout(c.timeout).
		SetProtocolVersion(4). // MQTT 3.1.1
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost(err) })
	if c.username != "" {
		o.SetUsername(c.username).SetPassword(c.password)
	}
	if c.tls != nil {
		o.SetTLSConfig(c.tls)
	}
	return o
}

// dial connects a client made from o, once.
func (c *conn) dial(ctx context.Context, o *paho.ClientOptions) (paho.Client, error) {
	cl := paho.NewClient(o)
	if err := wait(ctx, cl.Connect(), c.timeout+time.Second); err != nil {
		cl.Disconnect(0)
		return nil, c.redact(err)
	}
	return cl, nil
}

// wait waits for tok until timeout or ctx ends.
func wait(ctx context.Context, tok paho.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return errTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errTimeout = errors.New("no answer from the broker in time")

// transient reports whether err may pass by itself: the network, a
// broker not answering or not available. A refused identity, bad
// credentials, a TLS certificate or a protocol the broker refuses do not.
func transient(err error) bool {
	var (
		verify *tls.CertificateVerificationError
		alert  tls.AlertError
		ua     x509.UnknownAuthorityError
		host   x509.HostnameError
	)
	switch {
	case err == nil, errors.As(err, &verify), errors.As(err, &alert), errors.As(err, &ua), errors.As(err, &host):
		return false
	case errors.Is(err, errTimeout), errors.Is(err, paho.ErrNotConnected), errors.Is(err, packets.ErrorRefusedServerUnavailable), errors.Is(err, packets.ErrorNetworkError):
		return true
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised),
		errors.Is(err, packets.ErrorRefusedIDRejected), errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return false
	}
	if retry.Network(err) {
		return true
	}
	// paho words a lost connection in its own errors.
	msg := err.Error()
	for _, s := range []string{"connection lost", "network Error", "not Connected", "i/o timeout", "EOF", "no such host", "broken by timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// redact keeps the password out of err.
func (c *conn) redact(err error) error {
	if err == nil || c.password == "" || !strings.Contains(err.Error(), c.password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), c.password, "[redacted]"))
}
