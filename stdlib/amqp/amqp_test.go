package amqp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestSourceAcksAfterCommit checks that the source acknowledges nothing
// before Commit: a source closed without a commit leaves every message in
// the queue (redelivered, and flagged so); a commit acknowledges exactly
// the messages at or below its position.
func TestSourceAcksAfterCommit(t *testing.T) {
	e := newRMQ(t)
	q := e.queue("q")
	e.publish(q, 0, 10)

	s := openSource(t, sourceConfig(t, map[string]any{"queue": q}))
	recs := stdlibtest.ReadN(t, s, 10, 10*time.Second)
	for i, r := range recs {
		v := r.Value.(map[string]any)
		if v["n"] != int64(i) || r.Pos.Offset != int64(i+1) || r.Pos.Partition != q || r.Pos.Source != "src" {
			t.Fatalf("record %d: value %v at %v", i, v, r.Pos)
		}
		m := stdlib.Meta(&r)
		if m["message_id"] != fmt.Sprintf("m%d", i) || m["routing_key"] != q || m["exchange"] != "" || m["redelivered"] != false {
			t.Fatalf("record %d: meta %v", i, m)
		}
		if h := m["headers"].(map[string]any); h["h"] != "v" || h["n"] != fmt.Sprint(i) {
			t.Fatalf("record %d: headers %v", i, h)
		}
	}
	s.Close(t.Context())

	// Nothing was committed: all ten come again, redelivered.
	s = openSource(t, sourceConfig(t, map[string]any{"queue": q}))
	recs = stdlibtest.ReadN(t, s, 10, 10*time.Second)
	for i, r := range recs {
		if !r.Msg.Redelivered || r.Value.(map[string]any)["n"] != int64(i) {
			t.Fatalf("after a close without commit, record %d: redelivered %v, value %v", i, r.Msg.Redelivered, r.Value)
		}
	}
	// Commit the first six (positions of another source or partition are
	// not this one's).
	err := s.Commit(t.Context(), []stdlib.Position{
		{Source: "other", Partition: q, Offset: 10},
		{Source: "src", Partition: q + "x", Offset: 10},
		{Source: "src", Partition: q, Offset: recs[5].Pos.Offset},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())

	s = openSource(t, sourceConfig(t, map[string]any{"queue": q}))
	recs = stdlibtest.ReadN(t, s, 4, 10*time.Second)
	var got []int64
	for _, r := range recs {
		got = append(got, r.Value.(map[string]any)["n"].(int64))
	}
	if !slices.Equal(got, []int64{6, 7, 8, 9}) {
		t.Fatalf("after committing six, read %v, want [6 7 8 9]", got)
	}
	commitAll(t, e, s, q, recs[3].Pos)
}

// commitAll commits pos, closes s and checks that queue q is empty.
func commitAll(t *testing.T, e *rmq, s *source, q string, pos stdlib.Position) {
	t.Helper()
	if err := s.Commit(t.Context(), []stdlib.Position{pos}); err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())
	if n := e.count(q); n != 0 {
		t.Fatalf("queue holds %d messages after every one was committed", n)
	}
}

// TestSourceDeclareBindDecodeError declares the queue, its exchange and
// binding; a message that is not JSON comes with Err set (the stage's
// error policy decides) and the others are read on.
func TestSourceDeclareBindDecodeError(t *testing.T) {
	e := newRMQ(t)
	q, x := e.name+"-q", e.name+"-x"
	t.Cleanup(func() { e.deleteQueue(q); e.deleteExchange(x) })
	s := openSource(t, sourceConfig(t, map[string]any{"queue": q,
		"declare_queue": map[string]any{"type": stdlib.Ident("quorum")},
		"bind":          map[string]any{"exchange": x, "exchange_type": stdlib.Ident("topic"), "keys": []any{"order.#"}}}))
	for i, body := range []string{`{"a":1}`, `not json`, `{"a":3}`, `{"a":4}`} {
		key := "order.eu"
		if i == 3 {
			key = "invoice.eu" // not bound: dropped by the exchange
		}
		if err := e.ch.Publish(x, key, false, false, amqp.Publishing{Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	recs := stdlibtest.ReadN(t, s, 3, 10*time.Second)
	if recs[0].Err != nil || recs[1].Err == nil || recs[2].Err != nil {
		t.Fatalf("errors: %v, %v, %v", recs[0].Err, recs[1].Err, recs[2].Err)
	}
	if !strings.Contains(recs[1].Err.Error(), "decode message 2 of queue") || string(recs[1].Raw) != "not json" {
		t.Fatalf("decode error %q, raw %q", recs[1].Err, recs[1].Raw)
	}
	if m := stdlib.Meta(&recs[2]); m["exchange"] != x || m["routing_key"] != "order.eu" || m["message_id"] != nil {
		t.Fatalf("meta %v", m)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if more, err := s.Read(ctx); len(more) > 0 || err != nil {
		t.Fatalf("unbound message read: %v %v", more, err)
	}
	// The queue is a quorum queue: declared as asked.
	if _, err := e.ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSourcePrefetch checks that the broker delivers no more than
// prefetch messages before some are acknowledged.
func TestSourcePrefetch(t *testing.T) {
	e := newRMQ(t)
	q := e.queue("q")
	e.publish(q, 0, 50)
	s := openSource(t, sourceConfig(t, map[string]any{"queue": q, "prefetch": int64(20), "max_wait": 300 * time.Millisecond}))
	recs := stdlibtest.ReadN(t, s, 20, 10*time.Second)
	more, err := s.Read(t.Context())
	if err != nil || len(recs)+len(more) != 20 {
		t.Fatalf("read %d + %d (%v) with prefetch 20", len(recs), len(more), err)
	}
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "src", Partition: q, Offset: 20}}); err != nil {
		t.Fatal(err)
	}
	if recs = stdlibtest.ReadN(t, s, 20, 10*time.Second); recs[0].Value.(map[string]any)["n"] != int64(20) {
		t.Fatalf("after the commit, first record %v", recs[0].Value)
	}
}

// TestSourceReconnect breaks the connection under the source: it
// reconnects and the messages it had not acknowledged come again,
// redelivered; nothing is lost.
func TestSourceReconnect(t *testing.T) {
	e := newRMQ(t)
	q := e.queue("q")
	p := newProxy(t)
	e.publish(q, 0, 20)
	s := openSource(t, sourceConfig(t, map[string]any{"queue": q, "url": p.url(), "retry_timeout": 30 * time.Second}))
	first := stdlibtest.ReadN(t, s, 20, 10*time.Second)
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "src", Partition: q, Offset: first[9].Pos.Offset}}); err != nil {
		t.Fatal(err)
	}
	p.cut()
	// The ten not acknowledged come again, flagged, with offsets that go
	// on growing (the acknowledgement of the first ten may have been lost
	// with the connection: then they come again too).
	seen := map[int64]bool{}
	var last stdlib.Position
	for !seen[19] {
		for _, r := range stdlibtest.ReadN(t, s, 1, 20*time.Second) {
			n := r.Value.(map[string]any)["n"].(int64)
			if !r.Msg.Redelivered || r.Pos.Offset <= 20 || r.Pos.Offset <= last.Offset {
				t.Fatalf("after reconnect, record %d: redelivered=%v at %v", n, r.Msg.Redelivered, r.Pos)
			}
			seen[n], last = true, r.Pos
		}
	}
	for n := int64(10); n < 20; n++ {
		if !seen[n] {
			t.Fatalf("record %d not redelivered after the connection broke (%v)", n, seen)
		}
	}
	// A commit of an offset of the broken channel acknowledges nothing on
	// the new one.
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "src", Partition: q, Offset: 20}}); err != nil {
		t.Fatal(err)
	}
	if len(s.pending) != len(seen) {
		t.Fatalf("%d unacknowledged after committing an offset of the old channel, want %d", len(s.pending), len(seen))
	}
	commitAll(t, e, s, q, last)
}

// TestSourceQueueMissing fails at once, naming the queue: a missing queue
// is not retried.
func TestSourceQueueMissing(t *testing.T) {
	e := newRMQ(t)
	s, err := newSource(sourceConfig(t, map[string]any{"queue": e.name + "-none", "retry_timeout": time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Open(t.Context(), nil)
	if err == nil || !strings.Contains(err.Error(), "NOT_FOUND") || time.Since(start) > 10*time.Second {
		t.Fatalf("Open on a missing queue: %v after %v", err, time.Since(start))
	}
}

// TestSecretsNotInErrors checks that neither a bad password nor a URL
// that does not parse shows the password in an error.
func TestSecretsNotInErrors(t *testing.T) {
	newRMQ(t)
	const pw = "pw-s3cr3t-value"
	s, err := newSource(sourceConfig(t, map[string]any{"queue": "q", "url": "amqp://guest:" + pw + "@127.0.0.1:5672/", "retry_timeout": 2 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Open(t.Context(), nil)
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "127.0.0.1:5672") {
		t.Fatalf("Open with a bad password: %v", err)
	}
	for _, u := range []string{"amqp://guest:" + pw + "@127.0.0.1:notaport/", "http://guest:" + pw + "@h/", "amqp://gu est:" + pw + "@h/"} {
		vals, _ := SinkSpec.Values(map[string]any{"url": u})
		errs := SinkSpec.Check(vals)
		if len(errs) != 1 || errs[0].Attr != "url" || strings.Contains(errs[0].Message, pw) {
			t.Errorf("Check %q: %v", u, errs)
		}
		if _, err := newSink(stdlib.Config{Attrs: vals}); err == nil || strings.Contains(err.Error(), pw) {
			t.Errorf("newSink %q: %v", u, err)
		}
	}
}

// TestTLSRefusedNotRetried dials the plain AMQP port with TLS: the
// handshake fails and is not retried (retrying would not change it).
func TestTLSRefusedNotRetried(t *testing.T) {
	e := newRMQ(t)
	cfg := sourceConfig(t, map[string]any{"queue": e.name, "url": "amqps://guest:guest@127.0.0.1:5672/",
		"tls": map[string]any{"server_name": "localhost"}, "retry_timeout": time.Minute})
	s, err := newSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Open(t.Context(), nil)
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("TLS to a plain port: %v after %v", err, time.Since(start))
	}
	if _, err := newSource(sourceConfig(t, map[string]any{"queue": "q", "tls": map[string]any{}})); err == nil ||
		!strings.Contains(err.Error(), "not amqps://") {
		t.Fatalf("tls with an amqp:// url: %v", err)
	}
}

// testRecords returns records {"n": from..to-1} at positions of source
// "in", partition "p".
func testRecords(from, to int) []stdlib.Record {
	var out []stdlib.Record
	for n := from; n < to; n++ {
		out = append(out, stdlib.Record{Value: map[string]any{"n": int64(n)}, Pos: stdlib.Position{Source: "in", Partition: "p", Offset: int64(n)},
			Headers: []stdlib.Header{{Key: "src", Value: []byte("x")}}})
	}
	return out
}

func openSink(t testing.TB, cfg stdlib.Config) *sink {
	t.Helper()
	s, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// TestSinkPublish declares an exchange and a bound queue, publishes with
// a routing key and headers per record and checks what the queue holds:
// bodies, persistent delivery, message ids from the positions, headers.
func TestSinkPublish(t *testing.T) {
	e := newRMQ(t)
	q, x := e.name+"-q", e.name+"-x"
	t.Cleanup(func() { e.deleteQueue(q); e.deleteExchange(x) })
	cfg := sinkConfig(t, map[string]any{"exchange": x, "mandatory": false,
		"declare_exchange": map[string]any{"type": stdlib.Ident("topic")},
		"declare_queue":    map[string]any{"name": q, "keys": []any{"even.*"}}},
		"routing_key", "headers")
	s := openSink(t, cfg)
	recs := testRecords(0, 10)
	for i := range recs {
		key := "even.x"
		if i%2 == 1 {
			key = "odd.x" // not bound: mandatory is off, the broker drops it
		}
		recs[i].Attrs = []any{key, map[string]any{"k": fmt.Sprint(i)}}
	}
	if err := s.Write(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if len(s.out) != 10 {
		t.Fatalf("%d messages awaiting confirms before the checkpoint, want 10", len(s.out))
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	got := e.drain(q, 500*time.Millisecond)
	if len(got) != 5 {
		t.Fatalf("queue holds %d messages, want 5", len(got))
	}
	for i, d := range got {
		n := 2 * i
		if string(d.Body) != fmt.Sprintf(`{"n":%d}`, n) || d.MessageId != fmt.Sprintf("p:in:p:%d", n) || d.DeliveryMode != amqp.Persistent ||
			d.RoutingKey != "even.x" || d.Headers["k"] != fmt.Sprint(n) || d.Headers["src"] != "x" || d.ContentType != "application/json" {
			t.Fatalf("message %d: %s id %s mode %d key %s headers %v type %s", i, d.Body, d.MessageId, d.DeliveryMode, d.RoutingKey, d.Headers, d.ContentType)
		}
	}
}

// TestSinkMandatoryReturns checks that a message no queue takes fails its
// record alone (a RecordError with the broker's reason) under mandatory,
// and that a message id set per record is used.
func TestSinkMandatoryReturns(t *testing.T) {
	e := newRMQ(t)
	q, x := e.name+"-q", e.name+"-x"
	t.Cleanup(func() { e.deleteQueue(q); e.deleteExchange(x) })
	cfg := sinkConfig(t, map[string]any{"exchange": x,
		"declare_exchange": map[string]any{"type": stdlib.Ident("direct")},
		"declare_queue":    map[string]any{"name": q, "keys": []any{"a"}}},
		"routing_key", "message_id")
	s := openSink(t, cfg)
	recs := testRecords(0, 6)
	for i := range recs {
		key := "a"
		if i == 1 || i == 4 {
			key = "b"
		}
		recs[i].Attrs = []any{key, "same-id"} // one id for all: returns still go to the right records
	}
	err := s.Write(t.Context(), recs)
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) || len(rerrs) != 2 || rerrs[0].Index != 1 || rerrs[1].Index != 4 ||
		!strings.Contains(rerrs[0].Error(), "NO_ROUTE (312)") || !strings.Contains(rerrs[0].Error(), `routing key "b"`) {
		t.Fatalf("Write: %v", err)
	}
	if len(s.out) != 0 {
		t.Fatalf("%d messages left unconfirmed after a mandatory write", len(s.out))
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	got := e.drain(q, 500*time.Millisecond)
	var ns []string
	for _, d := range got {
		ns = append(ns, string(d.Body))
		if d.MessageId != "same-id" {
			t.Fatalf("message id %q", d.MessageId)
		}
	}
	if want := []string{`{"n":0}`, `{"n":2}`, `{"n":3}`, `{"n":5}`}; !slices.Equal(ns, want) {
		t.Fatalf("queue holds %v, want %v", ns, want)
	}
}

// TestSinkReconnect breaks the connection between writes and before a
// checkpoint: the sink publishes what was not confirmed again on a new
// connection; the queue holds every record (duplicates allowed, with the
// same message id).
func TestSinkReconnect(t *testing.T) {
	e := newRMQ(t)
	q := e.queue("q")
	p := newProxy(t)
	cfg := sinkConfig(t, map[string]any{"url": p.url(), "routing_key": q, "mandatory": false, "retry_timeout": 30 * time.Second})
	s := openSink(t, cfg)
	for i := range 10 {
		if err := s.Write(t.Context(), testRecords(i*100, i*100+100)); err != nil {
			t.Fatal(err)
		}
		if i == 3 || i == 7 {
			p.cut()
		}
		if i == 5 {
			if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.cut()
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 2}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, d := range e.drain(q, time.Second) {
		if b, ok := ids[d.MessageId]; ok && b != string(d.Body) {
			t.Fatalf("message id %s on two bodies: %s and %s", d.MessageId, b, d.Body)
		}
		ids[d.MessageId] = string(d.Body)
	}
	for n := range 1000 {
		if ids[fmt.Sprintf("p:in:p:%d", n)] != fmt.Sprintf(`{"n":%d}`, n) {
			t.Fatalf("record %d missing from the queue (%d distinct)", n, len(ids))
		}
	}
}
