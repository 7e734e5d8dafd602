package mqtt

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// testBroker is the Mosquitto the tests use (PIPE_MQTT_BROKER overrides it).
func testBroker() string { return testkit.Env("PIPE_MQTT_BROKER", "127.0.0.1:1883") }

// needBroker skips t when Mosquitto is not running, or fails it when
// CI=true.
func needBroker(t testing.TB) {
	t.Helper()
	c, err := net.DialTimeout("tcp", testBroker(), 2*time.Second)
	if err != nil {
		testkit.Missing(t, "mosquitto (MQTT broker on %s) is not reachable: %v", testBroker(), err)
	}
	c.Close()
}

// uniq returns a name no other test run uses.
func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), rand.Uint32())
}

// testClient connects a client of the test's own (a publisher or a
// subscriber to check what a sink published), with a persistent session
// unless clean; handler receives every message.
func testClient(t testing.TB, id string, clean bool, handler paho.MessageHandler) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + testBroker()).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(time.Second).
		SetConnectRetryInterval(200 * time.Millisecond).SetProtocolVersion(4)
	if handler != nil {
		o.SetDefaultPublishHandler(handler)
	}
	cl := paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl
}

// dropSession removes the broker's session of client id.
func dropSession(t testing.TB, id string) {
	o := paho.NewClientOptions().AddBroker("tcp://" + testBroker()).SetClientID(id).SetCleanSession(true)
	cl := paho.NewClient(o)
	if tok := cl.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		cl.Disconnect(0)
	}
}

// publish publishes msgs to topic at qos and waits for each.
func publish(t testing.TB, cl paho.Client, topic string, qos byte, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		tok := cl.Publish(topic, qos, false, m)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish to %s: %v", topic, tok.Error())
		}
	}
}

// collector gathers the payloads a test client receives.
type collector struct {
	mu   sync.Mutex
	msgs []paho.Message
}

func (c *collector) handle(_ paho.Client, m paho.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

func (c *collector) payloads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = string(m.Payload())
	}
	return out
}

// waitFor waits until c holds n messages.
func (c *collector) waitFor(t testing.TB, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p := c.payloads(); len(p) >= n {
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := c.payloads()
	t.Fatalf("received %d messages in %v, want %d: %q", len(p), d, n, p)
	return nil
}

func config(t testing.TB, spec *stdlib.Spec, stage string, attrs map[string]any) stdlib.Config {
	t.Helper()
	if _, ok := attrs["brokers"]; !ok {
		attrs["brokers"] = []any{testBroker()}
	}
	a, err := spec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return stdlib.Config{Pipeline: "test", Stage: stage, Attrs: a, Tasks: 1, Delivery: stdlib.AtLeastOnce}
}

// quiet reads from src for d and fails on any record.
func quiet(t testing.TB, src stdlib.Source, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	for ctx.Err() == nil {
		b, _ := src.Read(ctx)
		for _, r := range b {
			t.Errorf("unexpected record %s: %s", r.Topic, r.Raw)
		}
	}
}

func values(rs []stdlib.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Raw)
	}
	return out
}

// TestSourceAcksAfterCommit: messages are acknowledged only by Commit.
// What the source read but did not commit is sent again after a restart
// of the source (the session kept it); what it committed is not. Topic
// wildcards, meta and offsets that continue after the stored ones are
// checked on the way.
func TestSourceAcksAfterCommit(t *testing.T) {
	needBroker(t)
	root := uniq("pipe-test")
	id := uniq("pipe-src")
	t.Cleanup(func() { dropSession(t, id) })
	cfg := config(t, SourceSpec, "in", map[string]any{"topic": root + "/+/temp", "client_id": id})
	open := func(resume stdlib.Resumer) *source {
		s, err := newSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(t.Context(), resume); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(nil)
	pub := testClient(t, uniq("pipe-pub"), true, nil)
	publish(t, pub, root+"/a/temp", 1, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	publish(t, pub, root+"/a/humidity", 1, `{"n":99}`) // not matched by the filter
	publish(t, pub, root+"/b/temp", 0, `{"n":4}`)
	rs := stdlibtest.ReadN(t, s, 4, 10*time.Second)
	if got := values(rs); !slices.Equal(got, []string{`{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":4}`}) {
		t.Fatalf("read %q", got)
	}
	for i, r := range rs {
		if r.Pos.Offset != int64(i) || r.Pos.Partition != id {
			t.Errorf("record %d at %v", i, r.Pos)
		}
		meta := stdlib.Meta(&r)
		wantQoS := int64(1)
		if i == 3 {
			wantQoS = 0
		}
		if meta["topic"] == "" || meta["qos"] != wantQoS || meta["retained"] != false || (wantQoS == 1) != (meta["packet_id"] != int64(0)) {
			t.Errorf("record %d meta %v", i, meta)
		}
		if v := r.Value.(map[string]any)["n"]; v != int64(i+1) {
			t.Errorf("record %d value %v", i, r.Value)
		}
	}
	// Commit the first record only, then stop: the broker keeps 2 and 3.
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: id, Offset: 0}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the PUBACK is sent asynchronously
	s.Close(t.Context())

	s = open(stdlib.ResumeMap{id: 3})
	rs = stdlibtest.ReadN(t, s, 2, 10*time.Second)
	if got := values(rs); !slices.Equal(got, []string{`{"n":2}`, `{"n":3}`}) {
		t.Fatalf("after a restart read %q, want the two messages not committed", got)
	}
	if rs[0].Pos.Offset != 4 || rs[1].Pos.Offset != 5 {
		t.Errorf("offsets after resuming at 3: %v, %v, want 4 and 5", rs[0].Pos, rs[1].Pos)
	}
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: id, Offset: 5}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	s.Close(t.Context())

	s = open(nil)
	defer s.Close(t.Context())
	quiet(t, s, 700*time.Millisecond)
}

// TestSourceDecodeError: a payload that does not decode is a record with
// Err set, for the stage's error policy; the records around it go on.
func TestSourceDecodeError(t *testing.T) {
	needBroker(t)
	topic := uniq("pipe-test")
	id := uniq("pipe-src")
	t.Cleanup(func() { dropSession(t, id) })
	s, err := newSource(config(t, SourceSpec, "in", map[string]any{"topic": topic, "client_id": id}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	publish(t, testClient(t, uniq("pipe-pub"), true, nil), topic, 1, `{"n":1}`, `not json`, `{"n":3}`)
	rs := stdlibtest.ReadN(t, s, 3, 10*time.Second)
	if rs[0].Err != nil || rs[1].Err == nil || rs[2].Err != nil {
		t.Fatalf("errors: %v, %v, %v", rs[0].Err, rs[1].Err, rs[2].Err)
	}
	if !strings.Contains(rs[1].Err.Error(), topic) {
		t.Errorf("error does not name the topic: %v", rs[1].Err)
	}
}

// TestSinkPublishes: the sink publishes each record to its topic :=
// expression with the QoS and retain asked for, rejects a record whose
// topic is a filter through RecordErrors, and Checkpoint returns once
// the broker acknowledged everything.
func TestSinkPublishes(t *testing.T) {
	needBroker(t)
	root := uniq("pipe-test")
	var got collector
	sub := testClient(t, uniq("pipe-sub"), true, got.handle)
	if tok := sub.Subscribe(root+"/#", 2, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	cfg := config(t, SinkSpec, "out", map[string]any{"qos": int64(2)})
	cfg.Exprs = []string{"topic", "retain"}
	s, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	batch := []stdlib.Record{
		{Value: map[string]any{"n": int64(1)}, Attrs: []any{root + "/a", false}},
		{Value: map[string]any{"n": int64(2)}, Attrs: []any{root + "/+", false}},
		{Value: map[string]any{"n": int64(3)}, Attrs: []any{root + "/b", true}},
	}
	err = s.Write(t.Context(), batch)
	rerrs, ok := err.(stdlib.RecordErrors)
	if !ok || len(rerrs) != 1 || rerrs[0].Index != 1 || !strings.Contains(rerrs[0].Error(), "wildcard") {
		t.Fatalf("Write = %v, want one record error for the wildcard topic", err)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	ps := got.waitFor(t, 2, 5*time.Second)
	slices.Sort(ps)
	if !slices.Equal(ps, []string{`{"n":1}`, `{"n":3}`}) {
		t.Fatalf("received %q", ps)
	}
	got.mu.Lock()
	for _, m := range got.msgs {
		if m.Qos() != 2 {
			t.Errorf("%s arrived at QoS %d, want 2", m.Topic(), m.Qos())
		}
	}
	got.mu.Unlock()
	// The retained message is what a new subscriber gets first.
	var late collector
	sub2 := testClient(t, uniq("pipe-sub"), true, late.handle)
	if tok := sub2.Subscribe(root+"/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if ps := late.waitFor(t, 1, 5*time.Second); !slices.Equal(ps, []string{`{"n":3}`}) {
		t.Errorf("a new subscriber got %q, want the retained message only", ps)
	}
	late.mu.Lock()
	retained := late.msgs[0].Retained()
	late.mu.Unlock()
	if !retained {
		t.Error("retained flag not set")
	}
	// Clear the retained message.
	publish(t, sub2, root+"/b", 1)
	if tok := sub2.Publish(root+"/b", 1, true, ""); !tok.WaitTimeout(5 * time.Second) {
		t.Error("clearing the retained message timed out")
	}
}

// TestQoS0AtLeastOnce: qos 0 cannot give at_least_once.
func TestQoS0AtLeastOnce(t *testing.T) {
	cfg := config(t, SinkSpec, "out", map[string]any{"qos": int64(0), "topic": "t"})
	if _, err := newSink(cfg); err == nil || !strings.Contains(err.Error(), "qos 0 cannot honour at_least_once") {
		t.Fatalf("newSink = %v", err)
	}
	cfg.Delivery = stdlib.AtMostOnce
	if _, err := newSink(cfg); err != nil {
		t.Fatal(err)
	}
}

// TestCheck covers what the compiler rejects statically.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		spec  *stdlib.Spec
		attrs map[string]any
		want  string // "" for none
	}{
		{SourceSpec, map[string]any{"topic": "a/+/c"}, ""},
		{SourceSpec, map[string]any{"topic": "a/#"}, ""},
		{SourceSpec, map[string]any{"topic": "#"}, ""},
		{SourceSpec, map[string]any{"topic": "$share/g/a/+"}, ""},
		{SourceSpec, map[string]any{"topic": "a/#/c"}, "# must be the last level"},
		{SourceSpec, map[string]any{"topic": "a/b+"}, "whole levels"},
		{SourceSpec, map[string]any{"topic": "$share/g"}, "shared subscription"},
		{SourceSpec, map[string]any{"topics": []any{"a", ""}}, "empty"},
		{SourceSpec, map[string]any{}, "topic or topics is required"},
		{SourceSpec, map[string]any{"topic": "a", "qos": int64(0)}, "qos must be 1 to 2"},
		{SourceSpec, map[string]any{"topic": "a", "max_inflight": int64(0)}, "max_inflight"},
		{SinkSpec, map[string]any{"topic": "a/b"}, ""},
		{SinkSpec, map[string]any{"topic": "a/+"}, "wildcards"},
		{SinkSpec, map[string]any{"topic": "a/#"}, "wildcards"},
		{SinkSpec, map[string]any{"qos": int64(3)}, "qos must be 0 to 2"},
		{SinkSpec, map[string]any{"qos": int64(0), "delivery": stdlib.Ident("at_least_once")}, "qos 0 cannot honour at_least_once"},
		{SinkSpec, map[string]any{"qos": int64(0), "delivery": stdlib.Ident("at_most_once")}, ""},
		{SinkSpec, map[string]any{"qos": int64(-1)}, "qos must be 0 to 2"},
		{SinkSpec, map[string]any{"password": "x"}, "password needs username"},
		{SinkSpec, map[string]any{"brokers": []any{"http://h:1"}}, "unknown scheme"},
		{SinkSpec, map[string]any{"brokers": []any{"h"}}, "no port"},
	} {
		a := map[string]any{"brokers": []any{"127.0.0.1:1883"}}
		for k, v := range c.attrs {
			a[k] = v
		}
		d, hasDelivery := a["delivery"] // what the compiler adds for a sink
		delete(a, "delivery")
		vals, err := c.spec.Values(a)
		if err != nil {
			t.Fatal(err)
		}
		if hasDelivery {
			vals["delivery"] = d
		}
		var msgs []string
		for _, e := range c.spec.Check(vals) {
			msgs = append(msgs, e.Message)
		}
		got := strings.Join(msgs, "; ")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s %v: %q, want %q", c.spec.Kind, c.attrs, got, c.want)
		}
	}
}
