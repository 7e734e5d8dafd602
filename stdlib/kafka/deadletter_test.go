package kafka

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestDeadLetterEnvelope checks the envelope of Kafka messages that do not
// decode (the raw value as text or base64, with key, headers, topic,
// partition and offset), and that a Kafka sink rejects a record holding
// +Inf on its own while it writes that record's envelope.
func TestDeadLetterEnvelope(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	in, dlq := uniq("dl-in"), uniq("dl-out")
	newTopic(t, brokers, in, 1)
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: in, Transport: tr, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(t.Context(),
		kafka.Message{Key: []byte("k0"), Value: []byte(`{"id": 1,`), Headers: []kafka.Header{{Key: "trace", Value: []byte("t-1")}}},
		kafka.Message{Value: []byte{0xff, 0xfe, 0x00}},
	); err != nil {
		t.Fatal(err)
	}
	w.Close()

	src := openSource(t, config("in", brokers, map[string]any{"topic": in}), nil)
	defer closeAll(t, src)
	recs := readN(t, src, 2)
	now := time.Now()
	envs := make([]map[string]any, len(recs))
	for i := range recs {
		if recs[i].Err == nil {
			t.Fatalf("record %d decoded: %v", i, recs[i].Value)
		}
		envs[i] = exec.Envelope(&recs[i], "in", "p.pipe:5", fmt.Errorf("malformed input: %w", recs[i].Err), now)
	}
	e := envs[0]
	h, _ := e["headers"].([]any)
	if e["original"] != `{"id": 1,` || e["original_encoding"] != "text" || e["key"] != "k0" || e["key_encoding"] != "text" ||
		len(h) != 1 || fmt.Sprint(h[0]) != "map[encoding:text key:trace value:t-1]" {
		t.Errorf("envelope of the first message: %v", e)
	}
	want := fmt.Sprintf("map[kafka_partition:0 offset:0 partition:%s/0 source:in topic:%s]", in, in)
	if got := fmt.Sprint(e["source"]); got != want {
		t.Errorf("source %s, want %s", got, want)
	}
	e = envs[1]
	if e["original"] != "//4A" || e["original_encoding"] != "base64" || e["key"] != nil ||
		fmt.Sprint(e["source"]) != fmt.Sprintf("map[kafka_partition:0 offset:1 partition:%s/0 source:in topic:%s]", in, in) {
		t.Errorf("envelope of the second message: %v", e)
	}

	// The sink rejects the record holding +Inf alone, and writes its
	// envelope as a dead-letter sink would.
	snk, err := SinkSpec.NewSink(config("dlq", brokers, map[string]any{"topic": dlq, "create_topic": map[string]any{"partitions": int64(1)}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snk.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, snk)
	good := stdlib.Record{Partition: -1, Value: map[string]any{"id": "a", "per_seat": 25.0}}
	bad := stdlib.Record{Partition: -1, Value: map[string]any{"id": "b", "per_seat": math.Inf(1)}}
	var rerrs stdlib.RecordErrors
	if err := snk.Write(t.Context(), []stdlib.Record{good, bad}); !errors.As(err, &rerrs) || len(rerrs) != 1 || rerrs[0].Index != 1 {
		t.Fatalf("write: %v, want record 1 rejected", err)
	}
	dl := stdlib.Record{Partition: -1, Value: exec.Envelope(&bad, "out", "p.pipe:9", rerrs[0].Err, now)}
	if err := snk.Write(t.Context(), []stdlib.Record{dl}); err != nil {
		t.Fatalf("writing the envelope: %v", err)
	}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	out := openSource(t, config("check", brokers, map[string]any{"topic": dlq}), nil)
	defer closeAll(t, out)
	got := readN(t, out, 2)
	orig, _ := got[1].Value.(map[string]any)["original"].(map[string]any)
	if orig["per_seat"] != "+Inf" || orig["id"] != "b" {
		t.Errorf("envelope read back: %v", got[1].Value)
	}
}
