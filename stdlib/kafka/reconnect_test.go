package kafka

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port
}

// startAt starts an in-process broker on port with its data in dir.
func startAt(t *testing.T, port int, dir string) *devbroker.Broker {
	t.Helper()
	b, err := devbroker.Start(context.Background(), devbroker.Options{Port: port, DataDir: dir})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func TestBrokerDownAtStart(t *testing.T) {
	t.Run("gives_up_after_retry_timeout", func(t *testing.T) {
		addr, _ := freeAddr(t)
		attrs := map[string]any{"topic": "t", "retry_timeout": 700 * time.Millisecond}
		src, err := SourceSpec.NewSource(config("in", addr, attrs))
		if err != nil {
			t.Fatal(err)
		}
		alo, err := SinkSpec.NewSink(config("out", addr, attrs))
		if err != nil {
			t.Fatal(err)
		}
		eos := eosSink(t, addr, "t", map[string]any{"retry_timeout": 700 * time.Millisecond})
		for name, open := range map[string]func() error{
			"source":             func() error { return src.Open(t.Context(), nil) },
			"at_least_once sink": func() error { _, err := alo.Open(t.Context()); return err },
			"exactly_once sink":  func() error { _, err := eos.Open(t.Context()); return err },
		} {
			start := time.Now()
			err := open()
			took := time.Since(start)
			if err == nil {
				t.Fatalf("%s: opened with no broker", name)
			}
			msg := err.Error()
			if !strings.Contains(msg, "gave up after") || !strings.Contains(msg, "retry_timeout 700ms") {
				t.Errorf("%s: error %q does not say it gave up retrying", name, msg)
			}
			if took < 300*time.Millisecond || took > 3*time.Second {
				t.Errorf("%s: gave up after %v, want about retry_timeout (700ms)", name, took)
			}
		}
	})

	t.Run("waits_for_the_broker", func(t *testing.T) {
		addr, port := freeAddr(t)
		topic := "late"
		src, err := SourceSpec.NewSource(config("in", addr, map[string]any{"topic": topic}))
		if err != nil {
			t.Fatal(err)
		}
		snk := eosSink(t, addr, topic, map[string]any{"create_topic": map[string]any{"partitions": int64(2)}})
		opened := make(chan error, 1)
		go func() {
			if _, err := snk.Open(t.Context()); err != nil {
				opened <- err
				return
			}
			opened <- src.Open(t.Context(), nil)
		}()
		time.Sleep(1500 * time.Millisecond)
		select {
		case err := <-opened:
			t.Fatalf("opened before the broker started: %v", err)
		default:
		}
		startAt(t, port, t.TempDir())
		select {
		case err := <-opened:
			if err != nil {
				t.Fatalf("open once the broker is up: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("not opened 30s after the broker started")
		}
		defer closeAll(t, snk, src)
		if err := snk.Write(t.Context(), records(20, "r")); err != nil {
			t.Fatal(err)
		}
		if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, src, 20); len(got) != 20 {
			t.Fatalf("read %d records, want 20", len(got))
		}
	})
}

// TestBrokerRestartKeepsExactlyOnce restarts an in-process broker (its
// data on disk) while a source reads and both sinks hold records not yet
// checkpointed: they reconnect, the exactly-once sink starts its open
// transaction over, and every record arrives once (at least once for
// at_least_once), the source missing none.
func TestBrokerRestartKeepsExactlyOnce(t *testing.T) {
	addr, port := freeAddr(t)
	dir := t.TempDir()
	b := startAt(t, port, dir)
	in, eosOut, aloOut := uniq("rs-in"), uniq("rs-eos"), uniq("rs-alo")
	for _, topic := range []string{in, eosOut, aloOut} {
		newTopic(t, addr, topic, 2)
	}
	vals := make([]string, 40)
	for i := range vals {
		vals[i] = proctest.Event(i)
	}
	produce(t, addr, in, vals[:20]...)
	ctx := t.Context()
	src := openSource(t, config("in", addr, map[string]any{"topic": in}), nil)
	eos := eosSink(t, addr, eosOut, nil)
	if _, err := eos.Open(ctx); err != nil {
		t.Fatal(err)
	}
	alo, err := SinkSpec.NewSink(config("out", addr, map[string]any{"topic": aloOut}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alo.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, src, eos, alo)

	var last stdlib.Position
	pass := func(recs []stdlib.Record) {
		t.Helper()
		for _, snk := range []stdlib.Sink{eos, alo} {
			if err := snk.Write(ctx, recs); err != nil {
				t.Fatal(err)
			}
		}
		last = recs[len(recs)-1].Pos
	}
	checkpoint := func(id uint64) {
		t.Helper()
		for _, snk := range []stdlib.Sink{eos, alo} {
			if err := snk.Checkpoint(ctx, stdlib.Checkpoint{ID: id, Positions: []stdlib.Position{last}}); err != nil {
				t.Fatalf("checkpoint %d: %v", id, err)
			}
		}
	}
	got := readN(t, src, 20)
	pass(got[:10])
	checkpoint(1)
	pass(got[10:])
	// Records in the open transaction, and on their way to the other sink.
	if err := eos.(*sink).flush(ctx); err != nil {
		t.Fatal(err)
	}

	b.Close()
	time.Sleep(300 * time.Millisecond)
	startAt(t, port, dir)
	produce(t, addr, in, vals[20:]...)
	more := readN(t, src, 20)
	pass(more)
	checkpoint(2)
	got = append(got, more...)

	seen := map[float64]bool{}
	for _, r := range got {
		id := r.Value.(map[string]any)["id"]
		f, _ := id.(float64)
		if i, ok := id.(int64); ok {
			f = float64(i)
		}
		if seen[f] {
			t.Fatalf("source read id %v twice", id)
		}
		seen[f] = true
	}
	if len(seen) != 40 {
		t.Fatalf("source read %d distinct records, want 40", len(seen))
	}
	for _, c := range []struct {
		topic   string
		exactly bool
	}{{eosOut, true}, {aloOut, false}} {
		out := readOutput(t, addr, c.topic, 40, 30*time.Second)
		n := map[string]int{}
		for _, r := range out {
			var m map[string]any
			if err := json.Unmarshal(r.Raw, &m); err != nil {
				t.Fatal(err)
			}
			n[jsonString(t, m)]++
		}
		for _, v := range vals {
			var m map[string]any
			json.Unmarshal([]byte(v), &m)
			switch k := n[jsonString(t, m)]; {
			case k == 0:
				t.Errorf("%s: record %s missing", c.topic, v)
			case k > 1 && c.exactly:
				t.Errorf("%s: record %s written %d times", c.topic, v, k)
			}
		}
		t.Logf("%s: %d records read for 40 written", c.topic, len(out))
	}
}

func jsonString(t *testing.T, m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRestartDecidesCommitInDoubt plays the two outcomes of a commit whose
// answer a lost connection hid: restartWriter reads the commit token back
// and neither replays a transaction that committed nor drops one that did
// not.
func TestRestartDecidesCommitInDoubt(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("doubt")
	newTopic(t, brokers, topic, 1)
	ctx := t.Context()
	snk := openedEOSSink(t, brokers, topic)
	s := snk.(*sink)
	w := s.eos.main
	at := func(recs []stdlib.Record, first int64) []stdlib.Record {
		for i := range recs {
			recs[i].Pos = stdlib.Position{Source: "in", Partition: "src/0", Offset: first + int64(i)}
		}
		return recs
	}
	token := func() int64 {
		got, _, err := s.readLatest(ctx, w.offPart, func(k string) bool { return k == tokenKey(w.txid) })
		if err != nil {
			t.Fatal(err)
		}
		var v int64
		if err := json.Unmarshal(got[tokenKey(w.txid)].Raw, &v); err != nil {
			t.Fatalf("token: %v", err)
		}
		return v
	}

	// It committed: what the producer still keeps of it must not be sent
	// again. (The same records handed to it again stand for them.)
	write := func(recs []stdlib.Record) {
		t.Helper()
		if err := snk.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write(at(records(3, "a"), 0))
	pos := stdlib.Position{Source: "in", Partition: "src/0", Offset: 2}
	if err := s.commitWriter(ctx, w, []stdlib.Position{pos}); err != nil {
		t.Fatal(err)
	}
	write(at(records(3, "a"), 0))
	w.doubt = &commitToken{value: token(), changed: map[string]stdlib.Position{heldKey(w.txid, pos): pos}}
	if err := s.restartWriter(ctx, w, s.link.client()); err != nil {
		t.Fatal(err)
	}
	if w.dirty || w.doubt != nil {
		t.Fatalf("after a commit found committed: dirty %v, doubt %v", w.dirty, w.doubt)
	}

	// It did not commit: the records are sent again and commit later.
	write(at(records(2, "b"), 3))
	w.doubt = &commitToken{value: token() + 1}
	if err := s.restartWriter(ctx, w, s.link.client()); err != nil {
		t.Fatal(err)
	}
	if err := snk.Checkpoint(ctx, stdlib.Checkpoint{ID: 2, Positions: []stdlib.Position{{Source: "in", Partition: "src/0", Offset: 4}}}); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	got := append(readN(t, src, 5), readFor(t, src, 300*time.Millisecond)...)
	if want := "a0,a1,a2,b0,b1"; strings.Join(values(got, "name"), ",") != want {
		t.Fatalf("read %v, want %s", values(got, "name"), want)
	}
}
