package devbroker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Topic is a topic created when the broker starts.
type Topic struct {
	Name       string
	Partitions int // <= 0: Options.Partitions
}

// SASL mechanisms a [User] may authenticate with.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// User is a SASL user the broker accepts.
type User struct {
	Mechanism string // Plain, ScramSHA256 or ScramSHA512
	Name      string
	Password  string
}

// Options configures [Start]. The zero value runs a broker on a random free
// port whose auto-created topics have one partition.
type Options struct {
	Port       int     // 0: a free port
	Host       string  // listen host; "" means 127.0.0.1
	Partitions int     // partitions of auto-created topics; <= 0 means 1
	Topics     []Topic // created at start
	// DataDir keeps the broker's log and cluster id on disk so that they
	// survive a restart; "" keeps everything in memory. Every new broker
	// (in memory, or on a new data directory) has a random cluster id.
	DataDir string
	// TLS, when set, makes the broker accept TLS connections only.
	TLS *tls.Config
	// SASL, when non-empty, makes the broker require SASL authentication by
	// one of these users.
	SASL []User
}

// Broker is a running embedded broker.
type Broker struct {
	c    *kfake.Cluster
	addr string
}

// Start runs a broker until ctx is done or [Broker.Close] is called.
func Start(ctx context.Context, o Options) (*Broker, error) {
	parts := o.Partitions
	if parts <= 0 {
		parts = 1
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := o.Port
	opts := []kfake.Opt{
		// A cluster id of its own, as a Kafka cluster has: positions
		// name the cluster they point into, so that a new broker reusing
		// topic names is told apart. A data directory keeps the id of the
		// broker that created it (kfake stores it there and reads it back
		// in place of this one).
		kfake.ClusterID(newClusterID()),
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(parts),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}
	for _, t := range o.Topics {
		if t.Name == "" {
			return nil, fmt.Errorf("devbroker: topic with an empty name")
		}
		n := t.Partitions
		if n <= 0 {
			n = parts
		}
		opts = append(opts, kfake.SeedTopics(int32(n), t.Name))
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	if o.TLS != nil {
		opts = append(opts, kfake.TLS(o.TLS))
	}
	if len(o.SASL) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range o.SASL {
			switch u.Mechanism {
			case Plain, ScramSHA256, ScramSHA512:
			default:
				return nil, fmt.Errorf("devbroker: unknown sasl mechanism %q", u.Mechanism)
			}
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("devbroker: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, fmt.Errorf("devbroker: broker has no listener")
	}
	b := &Broker{c: c, addr: addrs[0]}
	if ctx.Done() != nil {
		go func() {
			<-ctx.Done()
			b.Close()
		}()
	}
	return b, nil
}

// newClusterID returns a random cluster id in Kafka's form: 16 random bytes
// in unpadded URL-safe base64.
func newClusterID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Addr returns the broker's bootstrap address, host:port.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker; it is safe to call more than once.
func (b *Broker) Close() { b.c.Close() }
