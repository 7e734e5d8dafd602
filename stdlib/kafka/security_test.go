package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

type pki struct {
	caPEM             []byte
	server            tls.Certificate
	clientPEM, keyPEM []byte
	pool              *x509.CertPool
}

// newPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA.
func newPKI(t *testing.T) *pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pipe test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"broker.test"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	p := &pki{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	sc, sk := leaf(2, "broker", x509.ExtKeyUsageServerAuth)
	if p.server, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	p.clientPEM, p.keyPEM = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
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
