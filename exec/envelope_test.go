package exec

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// TestEnvelope checks what a dead-letter envelope keeps of a record, and
// that JSON can always encode it.
func TestEnvelope(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		rec  stdlib.Record
		want string // the envelope without at, error, stage and time
	}{{
		name: "non-finite numbers",
		rec: stdlib.Record{Partition: -1, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: 7},
			Value: map[string]any{"id": "b", "per_seat": math.Inf(1), "l": []any{math.NaN(), 1.5, math.Inf(-1)}, "n": map[string]any{"f": float32(math.Inf(1))}}},
		want: `{"headers":[],"key":null,"key_encoding":null,"original":{"id":"b","l":["NaN",1.5,"-Inf"],"n":{"f":"+Inf"},"per_seat":"+Inf"},"original_encoding":"value","source":{"offset":7,"partition":"p0","source":"in"}}`,
	}, {
		name: "kafka message that did not decode",
		rec: stdlib.Record{Topic: "orders", Partition: 3, Pos: stdlib.Position{Source: "in", Partition: "orders/3", Offset: 41},
			Value: map[string]any(nil), Raw: []byte(`{"id": 1,`), Err: errors.New("unexpected end"),
			Key: []byte("k1"), Headers: []stdlib.Header{{Key: "trace", Value: []byte("t-1")}, {Key: "bin", Value: []byte{0xff, 0x00}}}},
		want: `{"headers":[{"encoding":"text","key":"trace","value":"t-1"},{"encoding":"base64","key":"bin","value":"/wA="}],"key":"k1","key_encoding":"text","original":"{\"id\": 1,","original_encoding":"text","source":{"kafka_partition":3,"offset":41,"partition":"orders/3","source":"in","topic":"orders"}}`,
	}, {
		name: "bytes that are not UTF-8",
		rec: stdlib.Record{Partition: -1, Pos: stdlib.Position{Source: "in", Partition: "in.jsonl", Offset: 20},
			Raw: []byte{0xfe, 0xff, 'x'}, Err: errors.New("not json"), Key: "\xff", Line: 3, Start: 16},
		want: `{"headers":[],"key":"/w==","key_encoding":"base64","original":"/v94","original_encoding":"base64","source":{"line":3,"offset":16,"partition":"in.jsonl","source":"in"}}`,
	}, {
		name: "a value no format encodes",
		rec: stdlib.Record{Partition: -1, Pos: stdlib.Position{Source: "in", Partition: "stdin", Offset: 5},
			Value: map[string]any{"c": make(chan int)}, Raw: []byte(`{"c":1}`), Line: 1},
		want: `{"headers":[],"key":null,"key_encoding":null,"original":"{\"c\":1}","original_encoding":"text","source":{"line":1,"offset":0,"partition":"stdin","source":"in"}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := Envelope(&tt.rec, "s", "test.pipe:3", errors.New("boom"), now)
			b, err := codec.AppendJSON(nil, env)
			if err != nil {
				t.Fatalf("envelope does not encode: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if m["stage"] != "s" || m["at"] != "test.pipe:3" || m["error"] != "boom" || m["time"] != "2024-05-01T12:00:00Z" {
				t.Errorf("envelope %s", b)
			}
			for _, k := range []string{"stage", "at", "error", "time"} {
				delete(m, k)
			}
			got, _ := json.Marshal(m)
			if string(got) != tt.want {
				t.Errorf("envelope\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestStatusOfFailedRun checks that a record failing the run is counted in
// its stage's errors, that the error names the record, and that the last
// snapshot gives the run's average rates.
func TestStatusOfFailedRun(t *testing.T) {
	env := newTestEnv(t)
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(100))),
		stage("out", "sink", "memsink", 20, attr("reject", ival(7))),
	}, edge("src", "out"))
	var last Snapshot
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := Run(ctx, p, &Config{Registry: env.reg, StateDir: t.TempDir(), Status: func(s Snapshot) { last = s }})
	if err == nil || !strings.Contains(err.Error(), `stage "out": record p0@6: id 6 rejected`) {
		t.Fatalf("got %v, want the sink's rejection of record p0@6", err)
	}
	if len(last.Stages) != 2 {
		t.Fatalf("last snapshot %+v", last)
	}
	if st := last.Stages[1]; st.Errors != 1 {
		t.Errorf("sink status %+v, want 1 error", st)
	}
	if st := last.Stages[0]; st.Out == 0 || st.Rate <= 0 || st.Rate != float64(st.Out)/last.Elapsed.Seconds() {
		t.Errorf("source status %+v after %v, want the average rate", st, last.Elapsed)
	}
}
