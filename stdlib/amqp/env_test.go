package amqp

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// testURL is the server the tests use: PIPE_AMQP_URL, or the local one.
func testURL() string { return testkit.Env("PIPE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/") }

// rmq is one test's connection to the server, with the queues and
// exchanges it made, deleted at the end.
type rmq struct {
	t    testing.TB
	cn   *amqp.Connection
	ch   *amqp.Channel
	name string // unique prefix of the test's queues and exchanges
}

// newRMQ connects to the test server. A missing server skips the test,
// or fails it when CI=true.
func newRMQ(t testing.TB) *rmq {
	t.Helper()
	cn, err := amqp.Dial(testURL())
	if err != nil {
		testkit.Missing(t, "rabbitmq (PIPE_AMQP_URL or 127.0.0.1:5672) is not reachable: %v", err)
	}
	ch, err := cn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	e := &rmq{t: t, cn: cn, ch: ch, name: fmt.Sprintf("pt-%s-%06d", name, rand.IntN(1000000))}
	t.Cleanup(func() { e.cn.Close() })
	return e
}

// reconnect replaces the test's own connection (after a server restart).
func (e *rmq) reconnect(ctx context.Context) {
	e.t.Helper()
	for {
		cn, err := amqp.Dial(testURL())
		if err == nil {
			ch, err := cn.Channel()
			if err == nil {
				e.cn.Close()
				e.cn, e.ch = cn, ch
				return
			}
			cn.Close()
		}
		if ctx.Err() != nil {
			e.t.Fatalf("reconnect: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// queue declares a durable queue named after the test with suffix,
// deleted when the test ends, and returns its name.
func (e *rmq) queue(suffix string) string {
	e.t.Helper()
	q := e.name + "-" + suffix
	if _, err := e.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { e.deleteQueue(q) })
	return q
}

func (e *rmq) deleteQueue(q string) {
	if cn, err := amqp.Dial(testURL()); err == nil {
		if ch, err := cn.Channel(); err == nil {
			ch.QueueDelete(q, false, false, false)
		}
		cn.Close()
	}
}

func (e *rmq) deleteExchange(x string) {
	if cn, err := amqp.Dial(testURL()); err == nil {
		if ch, err := cn.Channel(); err == nil {
			ch.ExchangeDelete(x, false, false)
		}
		cn.Close()
	}
}

// publish publishes messages {"n": from..to-1} to the default exchange
// for queue q, persistent, with message ids "m<n>" and a header, and waits
// for the broker's confirms.
func (e *rmq) publish(q string, from, to int) {
	e.t.Helper()
	var ms []amqp.Publishing
	for n := from; n < to; n++ {
		ms = append(ms, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("m%d", n),
			Headers: amqp.Table{"h": "v", "n": int32(n)},
			Body:    fmt.Appendf(nil, `{"n":%d}`, n),
		})
	}
	e.publishAll(q, ms)
}

// publishAll publishes ms to the default exchange for queue q and waits
// for the broker's confirms.
func (e *rmq) publishAll(q string, ms []amqp.Publishing) {
	e.t.Helper()
	ch, err := e.cn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		e.t.Fatal(err)
	}
	var dcs []*amqp.DeferredConfirmation
	for _, m := range ms {
		dc, err := ch.PublishWithDeferredConfirm("", q, true, false, m)
		if err != nil {
			e.t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for _, dc := range dcs {
		if !dc.Wait() {
			e.t.Fatal("publish not confirmed")
		}
	}
}

// drain consumes every message of q until none came for quiet, and
// returns them.
func (e *rmq) drain(q string, quiet time.Duration) []amqp.Delivery {
	e.t.Helper()
	ch, err := e.cn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	defer ch.Close()
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []amqp.Delivery
	for {
		select {
		case d := <-ds:
			out = append(out, d)
		case <-time.After(quiet):
			return out
		}
	}
}

// count returns how many messages q holds.
func (e *rmq) count(q string) int {
	e.t.Helper()
	ch, err := e.cn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	defer ch.Close()
	qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return qi.Messages
}

// sourceConfig returns a checked source Config for attrs.
func sourceConfig(t testing.TB, attrs map[string]any) stdlib.Config {
	t.Helper()
	if _, ok := attrs["url"]; !ok {
		attrs["url"] = testURL()
	}
	vals, err := SourceSpec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	if errs := SourceSpec.Check(vals); len(errs) > 0 {
		t.Fatal(errs)
	}
	return stdlib.Config{Pipeline: "p", Stage: "src", Attrs: vals, Tasks: 1}
}

// sinkConfig returns a checked sink Config for attrs, with exprs set per
// record.
func sinkConfig(t testing.TB, attrs map[string]any, exprs ...string) stdlib.Config {
	t.Helper()
	if _, ok := attrs["url"]; !ok {
		attrs["url"] = testURL()
	}
	vals, err := SinkSpec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	if errs := SinkSpec.Check(vals); len(errs) > 0 {
		t.Fatal(errs)
	}
	return stdlib.Config{Pipeline: "p", Stage: "out", Attrs: vals, Tasks: 1, Delivery: stdlib.AtLeastOnce, Exprs: exprs}
}

func openSource(t testing.TB, cfg stdlib.Config) *source {
	t.Helper()
	return stdlibtest.OpenSource[*source](t, nil)(newSource(cfg))
}

// proxy forwards TCP connections to the server until the test ends; cut
// breaks the ones open.
type proxy struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t testing.TB) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String()}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", "127.0.0.1:5672")
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

// url is the test server's URL through the proxy.
func (p *proxy) url() string { return "amqp://guest:guest@" + p.addr + "/" }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
