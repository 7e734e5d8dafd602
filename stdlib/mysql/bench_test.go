package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"pipe.dev/pipe/stdlib"
)

// BenchmarkSink writes benchmark-shaped rows (6 columns) in Write batches
// of 1,000 with a checkpoint every 100,000 rows, and reports rows/s:
// insert into a table without keys, upsert by the primary key (rows
// inserted, then the same ids updated). Beside it, plain database/sql
// loops with the same driver do the same job against the same server:
// "rowwise" one INSERT per row in one transaction per 100,000 rows,
// "multirow" multi-row INSERTs of 1,000 rows.
//
//	go test -run '^$' -bench Sink -benchtime 100000x ./stdlib/mysql/
func BenchmarkSink(b *testing.B) {
	for _, mode := range []string{"insert", "upsert"} {
		b.Run(mode+"/sink_exactly_once", func(b *testing.B) { benchSink(b, mode, stdlib.ExactlyOnce) })
		b.Run(mode+"/sink_at_least_once", func(b *testing.B) { benchSink(b, mode, stdlib.AtLeastOnce) })
		b.Run(mode+"/plain_rowwise", func(b *testing.B) { benchPlain(b, mode, 1) })
		b.Run(mode+"/plain_multirow", func(b *testing.B) { benchPlain(b, mode, 1000) })
	}
}

const benchWriteBatch, benchCheckpoint = 1000, 100000

const benchTable = `CREATE TABLE bench (id bigint %s, user longtext, amount double, country longtext, event longtext, ts datetime(6))`

// newBenchTable creates the table bench in a database of the benchmark's
// own, with a primary key for upsert.
func newBenchTable(b *testing.B, mode string) *myEnv {
	e := newMy(b)
	key := ""
	if mode == "upsert" {
		key = "PRIMARY KEY"
	}
	e.exec(fmt.Sprintf(benchTable, key))
	return e
}

// benchWrites times writing b.N event rows into the table bench: write
// takes them benchWriteBatch at a time, and commit is called every
// benchCheckpoint rows and at the end, with the count written. For upsert
// the rows are written once untimed first, so that the timed run updates
// them.
func benchWrites(b *testing.B, e *myEnv, mode string, write func([]stdlib.Record), commit func(written int)) {
	run := func() {
		for written := 0; written < b.N; {
			b.StopTimer()
			batch := events(int64(written), int64(min(written+benchWriteBatch, b.N)))
			b.StartTimer()
			write(batch)
			written += len(batch)
			if written%benchCheckpoint == 0 || written == b.N {
				commit(written)
			}
		}
	}
	if mode == "upsert" {
		b.StopTimer()
		run()
		b.StartTimer()
	}
	b.ResetTimer()
	run()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	if n := e.count("bench"); n != int64(b.N) {
		b.Fatalf("%d rows in the table, want %d", n, b.N)
	}
}

func benchSink(b *testing.B, mode string, d stdlib.Delivery) {
	e := newBenchTable(b, mode)
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": "bench", "mode": stdlib.Ident(mode), "batch": int64(10000)}, eventType, d))
	var id uint64
	benchWrites(b, e, mode, func(batch []stdlib.Record) {
		if err := s.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}, func(written int) {
		id++
		if err := s.Checkpoint(b.Context(), stdlib.Checkpoint{ID: id, Positions: pos(int64(written - 1))}); err != nil {
			b.Fatal(err)
		}
	})
}

// benchPlain writes the same rows with database/sql and the same driver:
// per statements of per rows, committing every 100,000 rows.
func benchPlain(b *testing.B, mode string, per int) {
	e := newBenchTable(b, mode)
	db := e.open()
	defer db.Close()
	ctx := b.Context()
	var tx *sql.Tx
	benchWrites(b, e, mode, func(batch []stdlib.Record) {
		if tx == nil {
			var err error
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
		for i := 0; i < len(batch); i += per {
			plainInsert(ctx, b, tx, mode, batch[i:min(i+per, len(batch))])
		}
	}, func(int) {
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		tx = nil
	})
}

func plainInsert(ctx context.Context, b *testing.B, tx *sql.Tx, mode string, recs []stdlib.Record) {
	q := "INSERT INTO bench (id, user, amount, country, event, ts) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", len(recs)), ", ")
	if mode == "upsert" {
		q += " ON DUPLICATE KEY UPDATE user = VALUES(user), amount = VALUES(amount), country = VALUES(country), event = VALUES(event), ts = VALUES(ts)"
	}
	args := make([]any, 0, 6*len(recs))
	for _, r := range recs {
		m := r.Value.(map[string]any)
		args = append(args, m["id"], m["user"], m["amount"], m["country"], m["event"], m["ts"])
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSource reads b.N rows of a 6-column table by its incrementing
// id in batches of 10,000 and reports rows/s, beside a plain database/sql
// loop running the same keyset queries and scanning the same columns.
//
//	go test -run '^$' -bench Source -benchtime 100000x ./stdlib/mysql/
func BenchmarkSource(b *testing.B) {
	b.Run("source", func(b *testing.B) {
		e := benchRows(b)
		src := e.openSource(map[string]any{"table": "bench", "incrementing_column": "id", "batch": int64(10000)}, nil, nil)
		b.ResetTimer()
		for got := 0; got < b.N; {
			recs, err := src.Read(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			got += len(recs)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("plain", func(b *testing.B) {
		e := benchRows(b)
		db := e.open()
		defer db.Close()
		b.ResetTimer()
		last := int64(-1)
		for got := 0; got < b.N; {
			rows, err := db.QueryContext(b.Context(), "SELECT * FROM bench WHERE id > ? ORDER BY id LIMIT 10000", last)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var id int64
				var user, country, event string
				var amount float64
				var ts sql.NullTime
				if err := rows.Scan(&id, &user, &amount, &country, &event, &ts); err != nil {
					b.Fatal(err)
				}
				last = id
				got++
			}
			rows.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// benchRows returns a database whose table bench holds b.N rows.
func benchRows(b *testing.B) *myEnv {
	e := newMy(b)
	e.exec(fmt.Sprintf(benchTable, "PRIMARY KEY"))
	s, _ := e.openSink(e.sinkConfig(map[string]any{"table": "bench", "batch": int64(10000)}, eventType, stdlib.AtLeastOnce))
	for n := 0; n < b.N; n += benchWriteBatch {
		if err := s.Write(b.Context(), events(int64(n), int64(min(n+benchWriteBatch, b.N)))); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Checkpoint(b.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		b.Fatal(err)
	}
	return e
}
