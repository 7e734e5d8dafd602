package postgres

import (
	"fmt"
	"testing"

	"pipe.dev/pipe/stdlib"
)

// BenchmarkSink writes benchmark-shaped rows (6 columns) in Write batches of
// 1,000 with a checkpoint every 100,000 rows, and reports rows/s.
//
//	go test -run '^$' -bench Sink -benchtime 1000000x ./stdlib/postgres/
func BenchmarkSink(b *testing.B) {
	for _, mode := range []string{"insert", "upsert"} {
		for _, d := range []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce} {
			b.Run(fmt.Sprintf("%s/%s", mode, d), func(b *testing.B) { benchSink(b, mode, d) })
		}
	}
}

func benchSink(b *testing.B, mode string, d stdlib.Delivery) {
	writeBatch, checkpointEvery := benchWriteBatch, 100000
	e := newPG(b)
	table := e.table("bench")
	cfg := e.sinkConfig(map[string]any{"table": table, "create_table": true, "key": []any{"id"},
		"mode": stdlib.Ident(mode), "batch": int64(10000)}, eventType, d)
	s, _ := e.openSink(cfg)
	// Prebuilt batches: the benchmark measures the sink, not record making.
	batches := make([][]stdlib.Record, 0, b.N/writeBatch+1)
	for n := 0; n < b.N; n += writeBatch {
		batches = append(batches, events(int64(n), int64(min(n+writeBatch, b.N))))
	}
	b.ResetTimer()
	var id uint64
	written := 0
	for _, batch := range batches {
		if err := s.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
		written += len(batch)
		if written%checkpointEvery == 0 || written == b.N {
			id++
			if err := s.Checkpoint(b.Context(), stdlib.Checkpoint{ID: id, Positions: pos(int64(written - 1))}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	if n := e.count(table); n != int64(b.N) {
		b.Fatalf("%d rows in the table, want %d", n, b.N)
	}
}

// benchWriteBatch is the number of records per Write in BenchmarkSink.
var benchWriteBatch = 1000
