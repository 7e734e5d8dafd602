package s3

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/parquet-go/parquet-go"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// The benchmarks write and read the same records through the connector
// and through a plain minio-go loop doing the same job against the same
// server, and report records/s:
//
//	.ci/s3server
//	go test -run '^$' -bench . -benchtime 200000x ./stdlib/s3/
//
// Sink: Write batches of 1,000, objects of 10,000 records (rotate_records),
// a checkpoint every 50,000 records. Plain: the same records encoded
// (encoding/json lines, or parquet-go's writer of a Go struct) and put as
// objects of 10,000 records, one after the other.

const (
	benchBatch      = 1000
	benchObject     = 10000
	benchCheckpoint = 50000
)

var benchType = stdlibtest.EventType

type benchRec struct {
	ID      int64     `parquet:"id" json:"id"`
	User    string    `parquet:"user" json:"user"`
	Amount  float64   `parquet:"amount" json:"amount"`
	Country string    `parquet:"country" json:"country"`
	Event   string    `parquet:"event" json:"event"`
	TS      time.Time `parquet:"ts,timestamp(microsecond)" json:"ts"`
}

var benchT0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func benchValue(i int64) benchRec {
	return benchRec{ID: i, User: fmt.Sprintf("u%d", i%1000), Amount: float64(i%10000) / 100,
		Country: []string{"NL", "DE", "FR", "US"}[i%4], Event: "purchase", TS: benchT0.Add(time.Duration(i) * time.Second)}
}

func benchRecords(first, last int64) []stdlib.Record {
	out := make([]stdlib.Record, 0, last-first)
	for i := first; i < last; i++ {
		v := benchValue(i)
		out = append(out, stdlib.Record{Value: map[string]any{"id": v.ID, "user": v.User, "amount": v.Amount,
			"country": v.Country, "event": v.Event, "ts": v.TS}, Pos: stdlib.Position{Source: "in", Partition: "p0", Offset: i}})
	}
	return out
}

func BenchmarkSink(b *testing.B) {
	for _, format := range []string{"json", "parquet"} {
		b.Run(format, func(b *testing.B) {
			e := newEnv(b)
			cfg := config(b, SinkSpec, e.attrs(map[string]any{"format": stdlib.Ident(format), "rotate_records": int64(benchObject)}))
			cfg.Input = benchType
			s, err := newSink(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Open(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var id uint64
			for written := 0; written < b.N; {
				b.StopTimer()
				batch := benchRecords(int64(written), int64(min(written+benchBatch, b.N)))
				b.StartTimer()
				if err := s.Write(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
				written += len(batch)
				if written%benchCheckpoint == 0 || written == b.N {
					id++
					if err := s.Checkpoint(b.Context(), stdlib.Checkpoint{ID: id, Positions: []stdlib.Position{{Source: "in", Partition: "p0", Offset: int64(written - 1)}}}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func BenchmarkPlainPut(b *testing.B) {
	for _, format := range []string{"json", "parquet"} {
		b.Run(format, func(b *testing.B) {
			e := newEnv(b)
			b.ResetTimer()
			var buf bytes.Buffer
			for first := 0; first < b.N; first += benchObject {
				last := min(first+benchObject, b.N)
				b.StopTimer()
				recs := make([]benchRec, 0, last-first)
				for i := first; i < last; i++ {
					recs = append(recs, benchValue(int64(i)))
				}
				b.StartTimer()
				buf.Reset()
				if format == "json" {
					enc := json.NewEncoder(&buf)
					for i := range recs {
						if err := enc.Encode(&recs[i]); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					w := parquet.NewGenericWriter[benchRec](&buf, parquet.Compression(&parquet.Snappy))
					if _, err := w.Write(recs); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				key := fmt.Sprintf("plain/%010d.%s", first, format)
				if _, err := e.cli.PutObject(b.Context(), e.bucket, key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), minio.PutObjectOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// benchObjects puts n JSON lines records as objects of benchObject
// records under in/.
func benchObjects(b *testing.B, e *s3Env, n int) {
	var buf bytes.Buffer
	for first := 0; first < n; first += benchObject {
		buf.Reset()
		enc := json.NewEncoder(&buf)
		for i := first; i < min(first+benchObject, n); i++ {
			v := benchValue(int64(i))
			enc.Encode(&v)
		}
		e.put(b, fmt.Sprintf("in/%010d.jsonl", first), buf.Bytes())
	}
}

func BenchmarkSource(b *testing.B) {
	e := newEnv(b)
	benchObjects(b, e, b.N)
	cfg := config(b, SourceSpec, e.attrs(map[string]any{"prefix": "in/"}))
	s, err := newSource(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(b.Context(), &resumer{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	n := 0
	for {
		recs, err := s.Read(b.Context())
		if err == stdlib.ErrEndOfInput {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	b.StopTimer()
	if n != b.N {
		b.Fatalf("read %d records, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkPlainGet(b *testing.B) {
	e := newEnv(b)
	benchObjects(b, e, b.N)
	b.ResetTimer()
	n := 0
	for o := range e.cli.ListObjects(b.Context(), e.bucket, minio.ListObjectsOptions{Prefix: "in/", Recursive: true}) {
		if o.Err != nil {
			b.Fatal(o.Err)
		}
		obj, err := e.cli.GetObject(b.Context(), e.bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(obj)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				b.Fatal(err)
			}
			n++
		}
		obj.Close()
		if err := sc.Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n != b.N {
		b.Fatalf("read %d records, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
