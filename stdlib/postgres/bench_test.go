package postgres

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"pipe.dev/pipe/stdlib"
)

// BenchmarkSink writes benchmark-shaped rows (6 columns) in Write batches of
// 1,000 with a checkpoint every 100,000 rows, and reports rows/s. insert
// appends to a table without keys (rows of several Writes share one COPY);
// insert_pk to a table with a primary key (one COPY per Write, so that a
// duplicate key is reported against its record); upsert by the primary key.
//
//	go test -run '^$' -bench Sink -benchtime 1000000x ./stdlib/postgres/
func BenchmarkSink(b *testing.B) {
	for _, mode := range []string{"insert", "insert_pk", "upsert"} {
		for _, d := range []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce} {
			b.Run(fmt.Sprintf("%s/%s", mode, d), func(b *testing.B) { benchSink(b, mode, d) })
		}
	}
}

func benchSink(b *testing.B, mode string, d stdlib.Delivery) {
	writeBatch, checkpointEvery := benchWriteBatch, 100000
	e := newPG(b)
	table := e.table("bench")
	attrs := map[string]any{"table": table, "create_table": true, "key": []any{"id"},
		"mode": stdlib.Ident(mode), "batch": int64(10000)}
	switch mode {
	case "insert":
		delete(attrs, "key")
	case "insert_pk":
		attrs["mode"] = stdlib.Ident("insert")
	}
	s, _ := e.openSink(e.sinkConfig(attrs, eventType, d))
	// Prebuilt batches: the benchmark measures the sink, not record making.
	batches := make([][]stdlib.Record, 0, b.N/writeBatch+1)
	for n := 0; n < b.N; n += writeBatch {
		batches = append(batches, events(int64(n), int64(min(n+writeBatch, b.N))))
	}
	cpu0 := backendCPU(s)
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
	if cpu1 := backendCPU(s); cpu0 >= 0 && cpu1 >= 0 {
		// Server CPU per row: a figure that does not depend on how busy
		// the machine is.
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N)*1e6, "server-µs/row")
	}
	if n := e.count(table); n != int64(b.N) {
		b.Fatalf("%d rows in the table, want %d", n, b.N)
	}
}

// benchWriteBatch is the number of records per Write in BenchmarkSink.
var benchWriteBatch = 1000

// backendCPU returns the CPU seconds used so far by the sink's server
// process when it runs on this machine, or -1.
func backendCPU(s *sink) float64 {
	if s.conn == nil {
		return -1
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.conn.PgConn().PID()))
	if err != nil {
		return -1
	}
	// Fields after the command name: utime and stime are the 12th and 13th.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (ut + st) / 100 // clock ticks (USER_HZ = 100)
}
