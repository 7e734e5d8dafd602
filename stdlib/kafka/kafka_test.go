package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// testBroker returns the bootstrap address of a broker for one test: the
// cluster named by PIPE_KAFKA_BROKERS, else an embedded broker.
func testBroker(t testing.TB, o devbroker.Options) string {
	t.Helper()
	if env := os.Getenv("PIPE_KAFKA_BROKERS"); env != "" && o.TLS == nil && len(o.SASL) == 0 {
		return env
	}
	b, err := devbroker.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

func uniq(name string) string {
	var b [4]byte
	rand.Read(b[:])
	return name + "-" + hex.EncodeToString(b[:])
}

// config is the Config of a one-task source or sink stage, checked as the
// executor checks it: defaults filled in from both specs (each keeps the
// other's attributes; the ones they share have the same default), or from
// the one that takes the attributes' values.
func config(stage, brokers string, attrs map[string]any) stdlib.Config {
	a := map[string]any{"brokers": []any{brokers}}
	for k, v := range attrs {
		a[k] = v
	}
	var errs []error
	for _, spec := range []*stdlib.Spec{SourceSpec, SinkSpec} {
		// An attribute one spec takes with a value the other refuses
		// (key_format = bytes: sources only) leaves that one's defaults out.
		if b, err := spec.Values(a); err != nil {
			errs = append(errs, err)
		} else {
			a = b
		}
	}
	if len(errs) == 2 {
		panic(fmt.Sprintf("stage %q: %v", stage, errs[0]))
	}
	return stdlib.Config{Pipeline: "test", Stage: stage, Attrs: a, Tasks: 1, Delivery: stdlib.AtLeastOnce}
}

func newTopic(t testing.TB, brokers, topic string, parts int) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr}
	if _, err := createTopic(t.Context(), cl, topic, parts, 1, nil); err != nil {
		t.Fatal(err)
	}
}

// produce writes values to topic with a plain kafka-go writer, key "k<i>".
func produce(t testing.TB, brokers, topic string, values ...string) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Balancer: &kafka.RoundRobin{}}
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(v)}
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func openSource(t testing.TB, cfg stdlib.Config, resume stdlib.Resumer) stdlib.Source {
	t.Helper()
	src, err := SourceSpec.NewSource(cfg)
	if err != nil {
		t.Fatalf("new source: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := src.Open(ctx, resume); err != nil {
		t.Fatalf("open source: %v", err)
	}
	return src
}

// readN reads until n records arrived, failing after a timeout.
func readN(t testing.TB, src stdlib.Source, n int) []stdlib.Record {
	return stdlibtest.ReadN(t, src, n, 30*time.Second)
}

// readFor reads everything that arrives within d.
func readFor(t testing.TB, src stdlib.Source, d time.Duration) []stdlib.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var out []stdlib.Record
	for {
		recs, err := src.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return out
			}
			t.Fatalf("read: %v", err)
		}
		out = append(out, recs...)
	}
}

func values(recs []stdlib.Record, field string) []string {
	var out []string
	for _, r := range recs {
		m, _ := r.Value.(map[string]any)
		out = append(out, fmt.Sprint(m[field]))
	}
	sort.Strings(out)
	return out
}

func closeAll(t testing.TB, cs ...interface{ Close(context.Context) error }) {
	for _, c := range cs {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

// writeAll opens a sink of cfg, closed when the test ends, writes recs
// and commits them.
func writeAll(t testing.TB, cfg stdlib.Config, recs []stdlib.Record) stdlib.Sink {
	t.Helper()
	snk, err := SinkSpec.NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snk.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(t, snk) })
	if err := snk.Write(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	return snk
}

func records(n int, prefix string) []stdlib.Record {
	recs := make([]stdlib.Record, n)
	for i := range recs {
		recs[i] = stdlib.Record{
			Key:       fmt.Sprintf("%s%d", prefix, i),
			Value:     map[string]any{"id": int64(i), "name": fmt.Sprintf("%s%d", prefix, i)},
			Headers:   []stdlib.Header{{Key: "h", Value: []byte("v")}},
			Partition: -1,
		}
	}
	return recs
}

func TestSinkSourceRoundTrip(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("roundtrip")
	writeAll(t, config("out", brokers, map[string]any{
		"topic": topic, "create_topic": map[string]any{"partitions": int64(3)},
	}), records(50, "r"))

	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	got := readN(t, src, 50)
	if len(got) != 50 {
		t.Fatalf("got %d records, want 50", len(got))
	}
	parts := map[int32]bool{}
	for _, r := range got {
		m := r.Value.(map[string]any)
		if r.Key != m["name"] {
			t.Errorf("key %v, want %v", r.Key, m["name"])
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != "v" {
			t.Errorf("headers %v", r.Headers)
		}
		if r.Topic != topic || r.Pos.Partition != partKey(topic, int(r.Partition)) || r.Pos.Source != "in" {
			t.Errorf("record place: topic %q partition %d pos %v", r.Topic, r.Partition, r.Pos)
		}
		if r.Time.IsZero() {
			t.Errorf("record without time")
		}
		parts[r.Partition] = true
	}
	if len(parts) != 3 {
		t.Errorf("records in %d partitions, want 3", len(parts))
	}
}

func TestSourceSpreadsPartitionsOverTasks(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("spread")
	newTopic(t, brokers, topic, 4)
	vals := make([]string, 40)
	for i := range vals {
		vals[i] = fmt.Sprintf(`{"n":%d}`, i)
	}
	produce(t, brokers, topic, vals...)
	seen := map[string]bool{}
	for task := range 2 {
		cfg := config("in", brokers, map[string]any{"topic": topic})
		cfg.Task, cfg.Tasks = task, 2
		src := openSource(t, cfg, nil)
		got := readN(t, src, 20)
		for _, r := range got {
			k := fmt.Sprint(r.Value.(map[string]any)["n"])
			if seen[k] {
				t.Errorf("record %s read by two tasks", k)
			}
			seen[k] = true
		}
		if extra := readFor(t, src, 300*time.Millisecond); len(extra) != 0 {
			t.Errorf("task %d read %d extra records", task, len(extra))
		}
		closeAll(t, src)
	}
	if len(seen) != 40 {
		t.Errorf("read %d distinct records, want 40", len(seen))
	}
}

func TestGroupOffsetsCommittedOnlyAtCommit(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic, group := uniq("group"), uniq("g")
	newTopic(t, brokers, topic, 1)
	produce(t, brokers, topic, `{"n":0}`, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	cfg := config("in", brokers, map[string]any{"topic": topic, "group": group, "session_timeout": time.Second})

	src := openSource(t, cfg, nil)
	got := readN(t, src, 4)
	closeAll(t, src) // no Commit: nothing is committed

	src = openSource(t, cfg, nil)
	again := readN(t, src, 4)
	if got[0].Pos != again[0].Pos {
		t.Fatalf("after a close without commit read from %v, want %v", again[0].Pos, got[0].Pos)
	}
	if err := src.Commit(t.Context(), []stdlib.Position{again[1].Pos}); err != nil {
		t.Fatal(err)
	}
	closeAll(t, src)

	src = openSource(t, cfg, nil)
	rest := readN(t, src, 2)
	if want := []string{"2", "3"}; strings.Join(values(rest, "n"), ",") != strings.Join(want, ",") {
		t.Fatalf("after commit of offset 1 read %v, want %v", values(rest, "n"), want)
	}
	closeAll(t, src)

	// A resume position wins over the committed offset.
	src = openSource(t, cfg, stdlib.ResumeMap{partKey(topic, 0): 2})
	defer closeAll(t, src)
	if got := readN(t, src, 1); values(got, "n")[0] != "3" {
		t.Fatalf("resumed after offset 2 read %v, want 3", values(got, "n"))
	}
}

func TestSourceStart(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("start")
	newTopic(t, brokers, topic, 1)
	produce(t, brokers, topic, `{"n":0}`, `{"n":1}`)
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic, "start": stdlib.Ident("latest")}), nil)
	defer closeAll(t, src)
	produce(t, brokers, topic, `{"n":2}`)
	if got := values(readN(t, src, 1), "n"); got[0] != "2" {
		t.Fatalf("start = latest read %v, want 2", got)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	src2 := openSource(t, config("in", brokers, map[string]any{"topic": topic, "start": future}), nil)
	defer closeAll(t, src2)
	if extra := readFor(t, src2, 300*time.Millisecond); len(extra) != 0 {
		t.Fatalf("start in the future read %d records", len(extra))
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	src3 := openSource(t, config("in", brokers, map[string]any{"topic": topic, "start": past}), nil)
	defer closeAll(t, src3)
	if got := readN(t, src3, 3); len(got) != 3 {
		t.Fatalf("start in the past read %d records, want 3", len(got))
	}
}

func TestSourceFormats(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("formats")
	newTopic(t, brokers, topic, 1)
	produce(t, brokers, topic, "hello")
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic, "format": stdlib.Ident("string"), "key_format": stdlib.Ident("bytes")}), nil)
	defer closeAll(t, src)
	r := readN(t, src, 1)[0]
	if v := r.Value.(map[string]any)["value"]; v != "hello" {
		t.Errorf("value %v, want hello", v)
	}
	if k, ok := r.Key.([]byte); !ok || string(k) != "k0" {
		t.Errorf("key %#v, want []byte k0", r.Key)
	}
	bad := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, bad)
	r = readN(t, bad, 1)[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "decode value") || string(r.Raw) != "hello" {
		t.Fatalf("json source on non-JSON data: record err = %v raw %q, want a decode error and the raw bytes", r.Err, r.Raw)
	}
}
