package httpconn

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/kafka"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestWebhookToKafkaExample runs examples/webhook_to_kafka.pipe against
// the development broker: requests answered 200 are in the topic (read
// committed), once each, keyed by account, carrying the request's key; a
// request repeated with its Idempotency-Key is answered 200 as a
// duplicate and not written again; a request without the token is 401 and
// one with a record not of the schema is 400.
func TestWebhookToKafkaExample(t *testing.T) {
	src, err := os.ReadFile("../../examples/webhook_to_kafka.pipe")
	if err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	text := strings.Replace(string(src), `"127.0.0.1:8080"`, fmt.Sprintf(`"127.0.0.1:%d"`, port), 1)
	b, err := devbroker.Start(t.Context(), devbroker.Options{Topics: []devbroker.Topic{{Name: "webhooks", Partitions: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Chdir(t.TempDir())
	t.Setenv("KAFKA_BROKERS", b.Addr())
	t.Setenv("HOOK_TOKEN", "s3cret")
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "webhook_to_kafka.pipe", []byte(text))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- exec.Run(ctx, p, &exec.Config{}) }()
	waitListening(t, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/hooks", port)
	post := func(key, token, body string) int {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		key, token, body string
		want             int
	}{
		{"k1", "s3cret", `{"id":"evt-1","kind":"invoice.paid","account":"a1","amount":12.5}`, 200},
		{"k2", "s3cret", `[{"id":"evt-2","kind":"invoice.paid","account":"a2"},{"id":"evt-3","kind":"refund","account":"a1","amount":3}]`, 200},
		{"k1", "s3cret", `{"id":"evt-1","kind":"invoice.paid","account":"a1","amount":12.5}`, 200},
		{"k3", "wrong", `{"id":"evt-4","kind":"x","account":"a1"}`, 401},
		{"k4", "s3cret", `{"id":"evt-5","kind":"x"}`, 400},
	} {
		if got := post(c.key, c.token, c.body); got != c.want {
			t.Errorf("%s %s: status %d, want %d", c.key, c.body, got, c.want)
		}
	}
	// Answered 200: already committed, so readable now.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: "webhooks", GroupID: "check",
		StartOffset: kafka.FirstOffset, IsolationLevel: kafka.ReadCommitted, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var got []string
	rctx, rcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer rcancel()
	for len(got) < 3 {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("read %v: %v", got, err)
		}
		var v map[string]any
		if json.Unmarshal(m.Value, &v) != nil {
			continue // a transaction marker: kafka-go's Reader hands them on
		}
		got = append(got, fmt.Sprintf("%s %s %s", m.Key, v["id"], v["request_key"]))
	}
	more, mcancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer mcancel()
	for {
		m, err := r.ReadMessage(more)
		if err != nil {
			break
		}
		if json.Valid(m.Value) {
			t.Errorf("a fourth message: %s", m.Value)
		}
	}
	sort.Strings(got)
	if want := "[a1 evt-1 k1 a1 evt-3 k2 a2 evt-2 k2]"; fmt.Sprint(got) != want {
		t.Errorf("messages %v, want %s", got, want)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(".pipe-state", "webhooks", "http_server.hooks.log")); err != nil {
		t.Errorf("position log: %v", err)
	}
}
