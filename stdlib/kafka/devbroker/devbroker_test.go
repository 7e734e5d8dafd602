package devbroker

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestStartCreatesTopicsAndAutoCreates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	b, err := Start(t.Context(), Options{Port: port, Partitions: 2, Topics: []Topic{{Name: "in", Partitions: 4}, {Name: "out"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if want := "127.0.0.1:" + strconv.Itoa(port); b.Addr() != want {
		t.Fatalf("Addr() = %q, want %q", b.Addr(), want)
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(b.Addr()), Transport: tr}
	res, err := cl.Metadata(t.Context(), &kafka.MetadataRequest{Topics: []string{"in", "out"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, tp := range res.Topics {
		got[tp.Name] = len(tp.Partitions)
	}
	if got["in"] != 4 || got["out"] != 2 {
		t.Fatalf("partitions = %v, want in:4 out:2", got)
	}

	// A topic nobody created is created on first produce.
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: "auto", Transport: tr, AllowAutoTopicCreation: true, RequiredAcks: kafka.RequireAll}
	if err := w.WriteMessages(t.Context(), kafka.Message{Value: []byte("x")}); err != nil {
		t.Fatalf("produce to an auto-created topic: %v", err)
	}
	w.Close()
}

func TestCloseOnContextEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	b, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	b.Close() // idempotent after the context closed it
	if _, err := Start(t.Context(), Options{SASL: []User{{Mechanism: "GSSAPI", Name: "u", Password: "p"}}}); err == nil {
		t.Fatal("unknown sasl mechanism accepted")
	}
}

// TestClusterID: every new broker has a cluster id of its own, and one
// started again on the same data directory keeps it.
func TestClusterID(t *testing.T) {
	id := func(o Options) string {
		t.Helper()
		b, err := Start(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		cl := &kafka.Client{Addr: kafka.TCP(b.Addr()), Transport: tr}
		res, err := cl.Metadata(t.Context(), &kafka.MetadataRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return res.ClusterID
	}
	a, b := id(Options{}), id(Options{})
	if a == "" || a == b {
		t.Fatalf("two new brokers have cluster ids %q and %q", a, b)
	}
	dir := t.TempDir()
	first := id(Options{DataDir: dir})
	if again := id(Options{DataDir: dir}); again != first || first == a || first == b {
		t.Fatalf("cluster id %q, on the same data directory again %q (others %q, %q)", first, again, a, b)
	}
}
