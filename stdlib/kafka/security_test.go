package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

type pki struct {
	caPEM             []byte
	server            tls.Certificate
	clientPEM, keyPEM []byte
	pool              *x509.CertPool
}

// newPKI makes a CA, a server certificate for 127.0.0.1 (and
// broker.test) and a client certificate, all signed by the CA.
func newPKI(t *testing.T) *pki {
	t.Helper()
	ca := testkit.NewCA(t, "pipe test ca")
	client := ca.Client(t, "client")
	return &pki{caPEM: []byte(ca.CertPEM), server: ca.Server(t, "broker.test").Pair(t),
		clientPEM: []byte(client.CertPEM), keyPEM: []byte(client.KeyPEM), pool: ca.Pool()}
}

// roundTrip writes and reads three records through the sink and source
// with the given connection attributes.
func roundTrip(t *testing.T, brokers string, conn map[string]any, delivery stdlib.Delivery) {
	t.Helper()
	topic := uniq("sec")
	a := map[string]any{"topic": topic, "create_topic": map[string]any{"partitions": int64(1)}}
	for k, v := range conn {
		a[k] = v
	}
	cfg := config("out", brokers, a)
	cfg.Delivery = delivery
	writeAll(t, cfg, records(3, "s"))
	sa := map[string]any{"topic": topic, "group": uniq("g"), "session_timeout": time.Second}
	for k, v := range conn {
		sa[k] = v
	}
	src := openSource(t, config("in", brokers, sa), nil)
	defer closeAll(t, src)
	got := readN(t, src, 3)
	if err := src.Commit(t.Context(), []stdlib.Position{got[2].Pos}); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	brokers := testBroker(t, devbroker.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	}})
	mtls := map[string]any{"ca": string(p.caPEM), "cert": string(p.clientPEM), "key": string(p.keyPEM)}
	t.Run("mutual", func(t *testing.T) {
		roundTrip(t, brokers, map[string]any{"tls": mtls}, stdlib.AtLeastOnce)
		roundTrip(t, brokers, map[string]any{"tls": mtls}, stdlib.ExactlyOnce)
	})
	t.Run("server_name", func(t *testing.T) {
		m := map[string]any{"server_name": "broker.test"}
		for k, v := range mtls {
			m[k] = v
		}
		roundTrip(t, brokers, map[string]any{"tls": m}, stdlib.AtLeastOnce)
	})
	t.Run("no_client_cert", func(t *testing.T) {
		cfg := config("in", brokers, map[string]any{"topic": "x", "tls": map[string]any{"ca": string(p.caPEM)}})
		src, err := SourceSpec.NewSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Open(t.Context(), nil); err == nil {
			src.Close(t.Context())
			t.Fatal("open without a client certificate succeeded")
		}
	})
	t.Run("unknown_ca", func(t *testing.T) {
		other := newPKI(t)
		cfg := config("in", brokers, map[string]any{"topic": "x", "tls": map[string]any{"ca": string(other.caPEM), "cert": string(p.clientPEM), "key": string(p.keyPEM)}})
		src, err := SourceSpec.NewSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Open(t.Context(), nil); err == nil {
			src.Close(t.Context())
			t.Fatal("open with a broker certificate of an unknown CA succeeded")
		}
	})
}

func TestSASL(t *testing.T) {
	p := newPKI(t)
	users := []devbroker.User{
		{Mechanism: devbroker.Plain, Name: "alice", Password: "pa55"},
		{Mechanism: devbroker.ScramSHA256, Name: "bob", Password: "s3cret"},
		{Mechanism: devbroker.ScramSHA512, Name: "carol", Password: "t0ps"},
	}
	brokers := testBroker(t, devbroker.Options{SASL: users})
	tlsBrokers := testBroker(t, devbroker.Options{SASL: users, TLS: &tls.Config{Certificates: []tls.Certificate{p.server}}})
	for i, mech := range []string{"plain", "scram_sha_256", "scram_sha_512"} {
		u := users[i]
		auth := map[string]any{"mechanism": stdlib.Ident(mech), "username": u.Name, "password": u.Password}
		t.Run(mech, func(t *testing.T) {
			roundTrip(t, brokers, map[string]any{"sasl": auth}, stdlib.AtLeastOnce)
			roundTrip(t, brokers, map[string]any{"sasl": auth}, stdlib.ExactlyOnce)
			roundTrip(t, tlsBrokers, map[string]any{"sasl": auth, "tls": map[string]any{"ca": string(p.caPEM)}}, stdlib.AtLeastOnce)
		})
	}
	t.Run("insecure_skip_verify", func(t *testing.T) {
		auth := map[string]any{"mechanism": stdlib.Ident("plain"), "username": "alice", "password": "pa55"}
		roundTrip(t, tlsBrokers, map[string]any{"sasl": auth, "tls": map[string]any{"insecure_skip_verify": true}}, stdlib.AtLeastOnce)
	})
}
