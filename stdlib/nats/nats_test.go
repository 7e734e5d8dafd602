package nats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// testURL is the NATS server the tests use: PIPE_NATS_URL or the local
// server with JetStream.
func testURL() string { return testkit.Env("PIPE_NATS_URL", "nats://127.0.0.1:4222") }

// natsEnv is a connection to the test server and its JetStream.
type natsEnv struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// newNATS connects to the test server; a missing server (or one without
// JetStream) skips the test, or fails it when CI=true.
func newNATS(t testing.TB) *natsEnv {
	t.Helper()
	nc, err := nats.Connect(testURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err == nil {
		var js jetstream.JetStream
		js, err = jetstream.New(nc)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
		}
		if err == nil {
			t.Cleanup(nc.Close)
			return &natsEnv{nc: nc, js: js}
		}
		nc.Close()
	}
	msg := fmt.Sprintf("nats-server with JetStream (PIPE_NATS_URL or 127.0.0.1:4222) is not reachable: %v", err)
	testkit.Missing(t, "%s", msg)
	return nil
}

// name returns a unique name with prefix.
func name(prefix string) string { return fmt.Sprintf("%s_%d", prefix, rand.IntN(1e9)) }

// stream creates a stream taking subject prefix.> and deletes it when
// the test ends.
func (e *natsEnv) stream(t testing.TB, name, prefix string) jetstream.Stream {
	t.Helper()
	st, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.js.DeleteStream(context.Background(), name) })
	return st
}

// publish stores n messages {"id": from+i} on subject, with a header.
func (e *natsEnv) publish(t testing.TB, subject string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := &nats.Msg{Subject: subject, Data: fmt.Appendf(nil, `{"id":%d}`, i), Header: nats.Header{"X-N": {fmt.Sprint(i)}}}
		if _, err := e.js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishes not acknowledged")
	}
}

// ids reads every message of stream and returns the id field of each, in
// stream order.
func (e *natsEnv) ids(t testing.TB, stream string) []int64 {
	t.Helper()
	st, err := e.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	n := st.CachedInfo().State.Msgs
	c, err := st.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for uint64(len(out)) < n {
		b, err := c.Fetch(min(int(n)-len(out), 1000), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range b.Messages() {
			var id int64
			if _, err := fmt.Sscanf(strings.TrimPrefix(string(m.Data()), `{"id":`), "%d", &id); err != nil {
				t.Fatalf("message %q: %v", m.Data(), err)
			}
			out = append(out, id)
			got++
		}
		if got == 0 {
			t.Fatalf("stream %s: read %d of %d messages", stream, len(out), n)
		}
	}
	return out
}

// config returns the checked Config of spec for attrs.
func config(t testing.TB, spec *stdlib.Spec, stage string, attrs map[string]any, exprs ...string) stdlib.Config {
	t.Helper()
	vals, err := spec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return stdlib.Config{Pipeline: "test", Stage: stage, Attrs: vals, Tasks: 1, Delivery: stdlib.ExactlyOnce, Exprs: exprs}
}

// readAll reads from src until it has n records or timeout passes.
func readAll(t testing.TB, src stdlib.Source, n int, timeout time.Duration) []stdlib.Record {
	t.Helper()
	var out []stdlib.Record
	deadline := time.Now().Add(timeout)
	for len(out) < n && time.Now().Before(deadline) {
		recs, err := src.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
	}
	return out
}

func offsets(recs []stdlib.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Pos.Offset
	}
	return out
}

func consumerInfo(t testing.TB, e *natsEnv, stream, consumer string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := e.js.Consumer(t.Context(), stream, consumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestSourceAcksAfterCommit reads a stream, checks the records and their
// metadata, and checks that the consumer acknowledges nothing before
// Commit and everything up to the committed position after it.
func TestSourceAcksAfterCommit(t *testing.T) {
	e := newNATS(t)
	sn, subj := name("src"), name("src")
	e.stream(t, sn, subj)
	e.publish(t, subj+".a", 0, 50)
	e.publish(t, subj+".b", 50, 50)
	cfg := config(t, SourceSpec, "in", map[string]any{"url": testURL(), "stream": sn, "consumer": "c1"})
	src, err := newSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(t.Context(), stdlib.ResumeMap(nil)); err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	if lag := src.Lag(t.Context()); lag != nil {
		t.Fatalf("lag before reading = %v", lag)
	}
	recs, err := src.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if lag := src.Lag(t.Context()); len(lag) != 1 || lag[0].Behind != int64(100-len(recs)) || lag[0].Partition != sn {
		t.Fatalf("lag after reading %d = %v", len(recs), lag)
	}
	recs = append(recs, readAll(t, src, 100-len(recs), 10*time.Second)...)
	if got := offsets(recs); !slices.Equal(got, stdlibtest.Seq(1, 101)) {
		t.Fatalf("offsets = %v", got)
	}
	if lag := src.Lag(t.Context()); len(lag) != 1 || lag[0].Behind != 0 {
		t.Fatalf("lag after reading all = %v", lag)
	}
	r := recs[60]
	if r.Subject != subj+".b" || r.Pos.Partition != sn || r.Value.(map[string]any)["id"].(int64) != 60 ||
		len(r.Headers) != 1 || string(r.Headers[0].Value) != "60" || time.Since(r.Time) > time.Minute {
		t.Fatalf("record 61 = %+v", r)
	}
	if m := stdlib.Meta(&r); m["subject"] != subj+".b" || m["offset"] != int64(61) {
		t.Fatalf("meta = %v", m)
	}
	if info := consumerInfo(t, e, sn, "c1"); info.AckFloor.Stream != 0 || info.NumAckPending != 100 {
		t.Fatalf("before Commit: ack floor %d, pending %d", info.AckFloor.Stream, info.NumAckPending)
	}
	if err := src.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: sn, Offset: 100}}); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, e, sn, "c1"); info.AckFloor.Stream != 100 || info.NumAckPending != 0 {
		t.Fatalf("after Commit: ack floor %d, pending %d", info.AckFloor.Stream, info.NumAckPending)
	}
}

// TestSourceResumes reads a stream, commits part of it and stops without
// acknowledging the rest (as a crash would); the next source, resumed at a
// position, continues exactly after it without waiting for ack_wait, and
// one without a resume position continues after the acknowledged floor.
func TestSourceResumes(t *testing.T) {
	e := newNATS(t)
	sn, subj := name("res"), name("res")
	e.stream(t, sn, subj)
	e.publish(t, subj+".x", 0, 100)
	open := func(resume stdlib.Resumer) *source {
		src, err := newSource(config(t, SourceSpec, "in", map[string]any{"url": testURL(), "stream": sn, "consumer": "c", "batch": int64(30)}))
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Open(t.Context(), resume); err != nil {
			t.Fatal(err)
		}
		return src
	}
	src := open(nil)
	recs := readAll(t, src, 100, 10*time.Second)
	if len(recs) != 100 {
		t.Fatalf("read %d records", len(recs))
	}
	if err := src.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: sn, Offset: 60}}); err != nil {
		t.Fatal(err)
	}
	src.Close(context.Background())
	if info := consumerInfo(t, e, sn, "c"); info.AckFloor.Stream != 60 {
		t.Fatalf("ack floor %d after committing 60", info.AckFloor.Stream)
	}

	// Resumed at 40 (an exactly-once sink holds less than was acknowledged).
	src = open(stdlib.ResumeMap{sn: 40})
	start := time.Now()
	recs = readAll(t, src, 60, 10*time.Second)
	if got := offsets(recs); !slices.Equal(got, stdlibtest.Seq(41, 101)) {
		t.Fatalf("resumed at 40: offsets %v", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("resumed read took %v: waited for redelivery", d)
	}
	src.Close(context.Background())

	// No resume position: after the consumer's floor (created at 41,
	// nothing acknowledged since).
	src = open(nil)
	recs = readAll(t, src, 60, 10*time.Second)
	if got := offsets(recs); !slices.Equal(got, stdlibtest.Seq(41, 101)) {
		t.Fatalf("after the ack floor: offsets %v", got)
	}
	if err := src.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: sn, Offset: 100}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, subj+".x", 100, 5)
	if got := offsets(readAll(t, src, 5, 10*time.Second)); !slices.Equal(got, stdlibtest.Seq(101, 106)) {
		t.Fatalf("new messages: offsets %v", got)
	}
	src.Close(context.Background())
}

// TestSourceIdentity checks that a stream deleted and created again under
// the same name has another identity, so that old positions are not
// applied to it.
func TestSourceIdentity(t *testing.T) {
	e := newNATS(t)
	sn, subj := name("ident"), name("ident")
	e.stream(t, sn, subj)
	var ids []string
	for range 2 {
		src, err := newSource(config(t, SourceSpec, "in", map[string]any{"url": testURL(), "stream": sn, "consumer": "c"}))
		if err != nil {
			t.Fatal(err)
		}
		var got resumeRec
		if err := src.Open(t.Context(), &got); err != nil {
			t.Fatal(err)
		}
		src.Close(context.Background())
		if got.partition != sn || !strings.Contains(got.identity, sn) {
			t.Fatalf("Resume(%q, %q)", got.partition, got.identity)
		}
		ids = append(ids, got.identity)
		if err := e.js.DeleteStream(t.Context(), sn); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		e.stream(t, sn, subj)
	}
	if ids[0] == ids[1] {
		t.Fatalf("a stream created again has the same identity %q", ids[0])
	}
}

type resumeRec struct{ partition, identity string }

func (r *resumeRec) Resume(partition, identity string) (int64, bool) {
	r.partition, r.identity = partition, identity
	return 0, false
}

// TestSinkDeduplicates writes a batch, then the same records again (a
// replay after a crash): the stream holds each once. A record whose
// subject no stream takes is a RecordError, the others are stored.
func TestSinkDeduplicates(t *testing.T) {
	e := newNATS(t)
	sn, subj := name("sink"), name("sink")
	cfg := config(t, SinkSpec, "out", map[string]any{"url": testURL(), "stream": sn, "create_stream": true,
		"subjects": []any{subj + ".>"}}, "subject", "headers")
	s, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.js.DeleteStream(context.Background(), sn) })
	if _, err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	batch := func(from, to int) []stdlib.Record {
		var out []stdlib.Record
		for i := from; i < to; i++ {
			sub := fmt.Sprintf("%s.%d", subj, i%3)
			if i == 7 {
				sub = "nowhere." + subj
			}
			out = append(out, stdlib.Record{Value: map[string]any{"id": int64(i)}, Pos: stdlib.Position{Source: "in", Partition: "p", Offset: int64(i)},
				Attrs: []any{sub, map[string]any{"h": fmt.Sprint(i)}}})
		}
		// A record split in two (flatten): both parts are kept.
		if from <= 5 && 5 < to {
			out = append(out[:6], append([]stdlib.Record{out[5]}, out[6:]...)...)
			out[6].Value = map[string]any{"id": int64(1005)}
		}
		return out
	}
	err = s.Write(t.Context(), batch(0, 20))
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) || len(rerrs) != 1 || rerrs[0].Index != 8 || !strings.Contains(rerrs[0].Err.Error(), "no stream") {
		t.Fatalf("Write = %v, want one record error for the record without a stream", err)
	}
	// The replay: records 10-19 again, then new ones.
	s2, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	if err := s2.Write(t.Context(), batch(10, 30)); err != nil {
		t.Fatal(err)
	}
	got := e.ids(t, sn)
	slices.Sort(got)
	var want []int64
	for i := int64(0); i < 30; i++ {
		if i != 7 {
			want = append(want, i)
		}
	}
	want = append(want, 1005)
	if !slices.Equal(got, want) {
		t.Fatalf("stream holds %v, want %v", got, want)
	}
}

// TestSecretsAndTLS checks that a bad credential is reported without its
// value, and that the tls block is applied: the test server speaks no
// TLS, so a source asking for it fails at once instead of connecting in
// plain text.
func TestSecretsAndTLS(t *testing.T) {
	e := newNATS(t)
	_, err := newSource(config(t, SourceSpec, "in", map[string]any{"url": testURL(), "stream": "S", "consumer": "c",
		"nkey_seed": "SUAhunter2hunter2"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad nkey_seed: %v", err)
	}
	sn, subj := name("tls"), name("tls")
	e.stream(t, sn, subj)
	src, err := newSource(config(t, SourceSpec, "in", map[string]any{"url": testURL(), "stream": sn, "consumer": "c",
		"tls": map[string]any{"insecure_skip_verify": true}, "retry_timeout": time.Duration(0)}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = src.Open(t.Context(), nil)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "secure") || time.Since(start) > 10*time.Second {
		t.Fatalf("Open with tls against a plain server: %v (after %v)", err, time.Since(start))
	}
}

// purgeKey removes a sink's positions from the default offsets bucket.
func (e *natsEnv) purgeKey(key string) {
	if kv, err := e.js.KeyValue(context.Background(), "pipe_offsets"); err == nil {
		kv.Purge(context.Background(), key)
	}
}

// TestSinkPositions checks that the sink's positions are reset for every
// partition at once, and that it holds none once its stream was deleted
// and created again (the positions are of another stream then); the
// contract suite checks the rest (TestContract/SinkHeld).
func TestSinkPositions(t *testing.T) {
	e := newNATS(t)
	sn := name("pos")
	bucket := name("offsets")
	t.Cleanup(func() { e.js.DeleteKeyValue(context.Background(), bucket) })
	t.Cleanup(func() { e.js.DeleteStream(context.Background(), sn) })
	open := func() (*sink, []stdlib.Position) {
		return stdlibtest.OpenSink[*sink](t)(newSink(config(t, SinkSpec, "out", map[string]any{"url": testURL(), "stream": sn, "create_stream": true,
			"subject": sn + ".x", "offsets_bucket": bucket})))
	}
	s, held := open()
	if len(held) != 0 {
		t.Fatalf("a new sink holds %v", held)
	}
	pos := []stdlib.Position{{Source: "in", Partition: "p", Offset: 41, Identity: "x"}}
	if err := s.Write(t.Context(), []stdlib.Record{{Value: map[string]any{"id": int64(1)}, Pos: pos[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos}); err != nil {
		t.Fatal(err)
	}
	// What the contract suite does not: pipe offsets reset (all
	// partitions), and a stream created again.
	var ps stdlib.PositionStore = s
	if err := ps.SetPositions(t.Context(), "in", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := ps.StoredPositions(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("after reset: StoredPositions = %v, %v", got, err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 2, Positions: pos}); err != nil {
		t.Fatal(err)
	}
	if err := e.js.DeleteStream(t.Context(), sn); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, held = open(); len(held) != 0 {
		t.Fatalf("stream created again: holds %v, want nothing", held)
	}
}

// TestCore publishes through the nats_core sink and receives through the
// nats_core source: subjects by expression, headers, and a message that
// does not decode reaching the stage's error policy as Record.Err.
func TestCore(t *testing.T) {
	e := newNATS(t)
	subj := name("core")
	src, err := newCoreSource(config(t, CoreSourceSpec, "in", map[string]any{"url": testURL(), "subject": subj + ".>"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	cfg := config(t, CoreSinkSpec, "out", map[string]any{"url": testURL()}, "subject", "headers")
	cfg.Delivery = stdlib.AtMostOnce
	s, err := newCoreSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var batch []stdlib.Record
	for i := range 10 {
		batch = append(batch, stdlib.Record{Value: map[string]any{"id": int64(i)}, Attrs: []any{fmt.Sprintf("%s.%d", subj, i%2), map[string]any{"n": fmt.Sprint(i)}}})
	}
	batch = append(batch, stdlib.Record{Value: map[string]any{"id": int64(99)}, Attrs: []any{"bad subject", nil}})
	err = s.Write(t.Context(), batch)
	var rerrs stdlib.RecordErrors
	if !errors.As(err, &rerrs) || len(rerrs) != 1 || rerrs[0].Index != 10 {
		t.Fatalf("Write = %v, want a record error for the bad subject", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Publish(subj+".raw", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, src, 11, 5*time.Second)
	if len(recs) != 11 {
		t.Fatalf("received %d messages, want 11", len(recs))
	}
	for i, r := range recs[:10] {
		if r.Err != nil || r.Value.(map[string]any)["id"] != int64(i) || r.Subject != fmt.Sprintf("%s.%d", subj, i%2) ||
			len(r.Headers) != 1 || string(r.Headers[0].Value) != fmt.Sprint(i) || r.Pos.Offset != int64(i+1) {
			t.Fatalf("record %d = %+v", i, r)
		}
	}
	if recs[10].Err == nil || string(recs[10].Raw) != "not json" {
		t.Fatalf("undecodable message: %+v", recs[10])
	}
}
