package kafka

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"time"

	kafkasasl "github.com/segmentio/kafka-go/sasl"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"

	"pipe.dev/pipe/stdlib/retry"
)

// topicIdentities returns the identity of each topic of topics that
// exists: "<cluster id>/<topic id>", the cluster id alone from a broker
// without topic ids (Kafka before 2.8), "" from one without cluster ids.
//
// kafka-go's protocol package stops at Metadata v8, before topic ids
// (v10), so this one request goes through franz-go's client (kgo), with
// the same brokers, TLS and SASL.
func (c *conn) topicIdentities(ctx context.Context, topics []string) (map[string]string, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.brokers...), kgo.ClientID(c.clientID), kgo.DialTimeout(10 * time.Second)}
	if c.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(c.tls.Clone()))
	}
	if c.sasl != nil {
		opts = append(opts, kgo.SASL(saslMech{c.sasl}))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("topic ids: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	res, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("topic ids: %w", err)
	}
	var cluster string
	if res.ClusterID != nil {
		cluster = *res.ClusterID
	}
	out := map[string]string{}
	for _, t := range res.Topics {
		if t.Topic == nil {
			continue
		}
		// A topic with an id exists, whatever else its answer says (a
		// topic just created may have no leader yet).
		hasID := t.TopicID != [16]byte{}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case err == kerr.UnknownTopicOrPartition:
			continue
		case err != nil && !hasID:
			return nil, fmt.Errorf("topic ids: topic %q: %w", *t.Topic, err)
		}
		id := cluster
		if hasID {
			id += "/" + base64.RawURLEncoding.EncodeToString(t.TopicID[:])
		}
		out[*t.Topic] = id
	}
	return out, nil
}

// identities is topicIdentities retrying transient failures with backoff
// until retry_timeout, logged as what's.
func (c *conn) identities(ctx context.Context, log *slog.Logger, what string, topics []string) (map[string]string, error) {
	var ids map[string]string
	err := retry.Do(ctx, c.backoff(log, what), transient, func() (err error) {
		ids, err = c.topicIdentities(ctx, topics)
		return err
	})
	return ids, err
}

// saslMech lets franz-go's client authenticate with a kafka-go SASL
// mechanism.
type saslMech struct{ m kafkasasl.Mechanism }

func (s saslMech) Name() string { return s.m.Name() }

func (s saslMech) Authenticate(ctx context.Context, _ string) (sasl.Session, []byte, error) {
	sm, ir, err := s.m.Start(ctx)
	if err != nil {
		return nil, nil, err
	}
	return saslSession{ctx, sm}, ir, nil
}

type saslSession struct {
	ctx context.Context
	sm  kafkasasl.StateMachine
}

// Challenge implements sasl.Session: kafka-go's state machine sends nothing
// more once it is done.
func (s saslSession) Challenge(b []byte) (bool, []byte, error) {
	done, resp, err := s.sm.Next(s.ctx, b)
	if done {
		resp = nil
	}
	return done, resp, err
}
