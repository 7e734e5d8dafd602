package postgres

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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
	// Records are made outside the timer and the CPU count: the benchmark
	// measures the sink.
	cpu0 := backendCPU(s)
	var client float64
	b.ResetTimer()
	var id uint64
	for written := 0; written < b.N; {
		b.StopTimer()
		batch := events(int64(written), int64(min(written+writeBatch, b.N)))
		c0 := selfCPU()
		b.StartTimer()
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
		client += selfCPU() - c0
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	if cpu1 := backendCPU(s); cpu0 >= 0 && cpu1 >= 0 {
		// Server CPU per row: a figure that does not depend on how busy
		// the machine is.
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N)*1e6, "server-µs/row")
	}
	b.ReportMetric(client/float64(b.N)*1e6, "client-µs/row")
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

// selfCPU returns the CPU seconds this process used so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
