package kafka

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// connParams are the connection attributes shared by source and sink.
var connParams = []stdlib.Param{
	{Name: "brokers", Type: stdlib.ListOf(stdlib.String), Required: true, Doc: "bootstrap brokers, host:port"},
	{Name: "client_id", Type: stdlib.String, Default: "pipe", Doc: "client id sent to the brokers"},
	tlsconf.Param("connect with TLS"),
	{Name: "sasl", Type: stdlib.Block(
		stdlib.Param{Name: "mechanism", Type: stdlib.Enum("plain", "scram_sha_256", "scram_sha_512"), Required: true},
		stdlib.Param{Name: "username", Type: stdlib.String, Required: true},
		stdlib.Param{Name: "password", Type: stdlib.String, Required: true, Secret: true},
	), Doc: "authenticate with SASL"},
	retry.Param,
}

// conn is a resolved connection configuration.
type conn struct {
	brokers  []string
	clientID string
	tls      *tls.Config
	sasl     sasl.Mechanism
	retry    time.Duration // retry_timeout
}

func newConn(cfg stdlib.Config) (*conn, error) {
	c := &conn{brokers: cfg.Strings("brokers"), clientID: cfg.String("client_id"), retry: cfg.Duration(retry.Param.Name)}
	var bs []string
	for _, b := range c.brokers {
		for _, p := range strings.Split(b, ",") {
			if p = strings.TrimSpace(p); p != "" {
				bs = append(bs, p)
			}
		}
	}
	c.brokers = bs
	if len(c.brokers) == 0 {
		return nil, errors.New("no brokers")
	}
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsconf.Config(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.tls = tc
	}
	if s, ok := cfg.Block("sasl"); ok {
		m, err := saslMechanism(s.String("mechanism"), s.String("username"), s.String("password"))
		if err != nil {
			return nil, fmt.Errorf("sasl: %w", err)
		}
		c.sasl = m
	}
	return c, nil
}

func saslMechanism(mech, user, pass string) (sasl.Mechanism, error) {
	switch mech {
	case "plain":
		return plain.Mechanism{Username: user, Password: pass}, nil
	case "scram_sha_256":
		return scram.Mechanism(scram.SHA256, user, pass)
	case "scram_sha_512":
		return scram.Mechanism(scram.SHA512, user, pass)
	}
	return nil, fmt.Errorf("unknown mechanism %q", mech)
}

// backoff returns a fresh backoff for one component's retries.
func (c *conn) backoff(log *slog.Logger, what string) *retry.Backoff {
	return retry.New(c.retry, log, what)
}

// transport returns a fresh transport: its connection pool is this
// component's own.
func (c *conn) transport() *kafka.Transport {
	return &kafka.Transport{
		ClientID:    c.clientID,
		TLS:         c.tls,
		SASL:        c.sasl,
		DialTimeout: 10 * time.Second,
		MetadataTTL: 5 * time.Second,
	}
}

func (c *conn) client(t *kafka.Transport) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(c.brokers...), Transport: t, Timeout: 30 * time.Second}
}

func (c *conn) dialer() *kafka.Dialer {
	return &kafka.Dialer{
		ClientID:      c.clientID,
		Timeout:       10 * time.Second,
		DualStack:     true,
		TLS:           c.tls,
		SASLMechanism: c.sasl,
	}
}

// link is a component's way to the cluster: a client over a transport of
// its own, replaced by a fresh one when a connection breaks. kafka-go's
// pool keeps a broken connection until a request fails on it, so after a
// broker restart every pooled connection would fail once more; a fresh
// transport dials anew. Safe for concurrent use.
type link struct {
	conn *conn
	mu   sync.Mutex
	cl   *kafka.Client
}

func newLink(c *conn) *link { return &link{conn: c, cl: c.client(c.transport())} }

// client returns the current client.
func (l *link) client() *kafka.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cl
}

// renew replaces the transport after a request on cl failed, unless it
// was replaced since cl was taken, and returns the current client.
func (l *link) renew(cl *kafka.Client) *kafka.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cl == cl {
		closeIdle(l.cl)
		l.cl = l.conn.client(l.conn.transport())
	}
	return l.cl
}

// do runs op on the current client until it succeeds, replacing the
// transport and waiting as b says after each transient failure.
func (l *link) do(ctx context.Context, b *retry.Backoff, op func(cl *kafka.Client) error) error {
	return retry.Do(ctx, b, transient, func() error {
		cl := l.client()
		err := op(cl)
		if err != nil && transient(err) {
			l.renew(cl)
		}
		return err
	})
}

// close closes the idle connections of the current transport.
func (l *link) close() { closeIdle(l.client()) }

func closeIdle(cl *kafka.Client) {
	if tr, ok := cl.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
}

// transient reports whether err is worth retrying on a fresh connection:
// the connection was refused or broke, a request timed out (callers check
// their own context first), or the broker answered with an error that goes
// away by itself (a coordinator loading or moving, a leader being
// elected, no broker reachable). An unknown topic is not one: it fails at
// once.
func transient(err error) bool {
	if retry.Network(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke == kafka.BrokerNotAvailable ||
			ke.Temporary() && ke != kafka.UnknownTopicOrPartition && ke != kafka.InvalidMessage
	}
	return false
}

// partitions returns the partitions of topic with their leaders.
func partitions(ctx context.Context, cl *kafka.Client, topics ...string) (map[string][]kafka.Partition, error) {
	res, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	out := map[string][]kafka.Partition{}
	for _, t := range res.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %q: %w", t.Name, t.Error)
		}
		// By id: brokers need not answer in order, and the partition a
		// key hashes to, or the __pipe_offsets partition a writer keeps
		// its positions in, must not change between calls.
		ps := slices.Clone(t.Partitions)
		slices.SortFunc(ps, func(a, b kafka.Partition) int { return cmp.Compare(a.ID, b.ID) })
		out[t.Name] = ps
	}
	return out, nil
}

// createTopic creates topic unless it exists, and reports whether it did.
func createTopic(ctx context.Context, cl *kafka.Client, topic string, parts, repl int, configs []kafka.ConfigEntry) (bool, error) {
	res, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: parts, ReplicationFactor: repl, ConfigEntries: configs,
	}}})
	if err != nil {
		return false, fmt.Errorf("create topic %q: %w", topic, err)
	}
	switch err := res.Errors[topic]; {
	case err == nil:
		return true, nil
	case errors.Is(err, kafka.TopicAlreadyExists):
		return false, nil
	default:
		return false, fmt.Errorf("create topic %q: %w", topic, err)
	}
}
