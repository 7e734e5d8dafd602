package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

// benchTemplate is the benchmark pipelines' generate template.
func benchTemplate() map[string]any {
	return map[string]any{
		"id":      &stdlib.Call{Name: "seq"},
		"user":    &stdlib.Call{Name: "pick", Args: map[string]any{"0": []any{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}}},
		"amount":  &stdlib.Call{Name: "random_float", Args: map[string]any{"0": 1.0, "1": 100.0}},
		"country": &stdlib.Call{Name: "pick", Args: map[string]any{"0": []any{"NL", "DE", "FR", "US"}}},
		"event":   "purchase",
		"ts":      &stdlib.Call{Name: "timestamp", Args: map[string]any{"start": "2024-01-01T00:00:01Z"}},
	}
}

// BenchmarkGenerate measures the generate source alone, per record.
func BenchmarkGenerate(b *testing.B) {
	g, err := newGenerate(config(GenerateSpec, "gen", map[string]any{"fields": benchTemplate(), "batch": int64(1024)}))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	g.Open(ctx, stdlib.ResumeMap{})
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		recs, err := g.Read(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkFileSourceJSON measures reading and decoding a JSONL file.
func BenchmarkFileSourceJSON(b *testing.B) {
	p := filepath.Join(b.TempDir(), "in.jsonl")
	f, _ := os.Create(p)
	const lines = 100000
	for i := range lines {
		fmt.Fprintf(f, `{"id":%d,"user":"u%d","amount":%d.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}`+"\n", i, i%100, i%100)
	}
	f.Close()
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		src, _ := newFileSource(config(FileSourceSpec, "in", map[string]any{"path": p, "batch": int64(1024)}))
		src.Open(ctx, stdlib.ResumeMap{})
		for {
			recs, err := src.Read(ctx)
			if errors.Is(err, stdlib.ErrEndOfInput) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += len(recs)
		}
		src.Close(ctx)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkFileSinkJSON measures encoding and writing a JSONL file.
func BenchmarkFileSinkJSON(b *testing.B) {
	c, _ := codec.New("json", nil, codec.Options{})
	m, _ := c.Decode([]byte(`{"id":123456,"customer":"u17","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z","region":"EU"}`))
	batch := make([]stdlib.Record, 1024)
	for i := range batch {
		batch[i].Value = m
	}
	s, _ := newFileSink(sinkConfig(filepath.Join(b.TempDir(), "out.jsonl"), stdlib.ExactlyOnce, nil))
	ctx := context.Background()
	s.Open(ctx)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	s.Checkpoint(ctx, stdlib.Checkpoint{ID: 1})
	s.Close(ctx)
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
