package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"pipe.dev/pipe/stdlib"
)

// benchCDC creates a table, a publication and a slot, then inserts n rows
// in transactions of 1000, so that the slot holds n changes to read.
// Without stream, the rows are inserted with neither publication nor
// slot, for the source to create them and read the rows in its snapshot.
func benchCDC(b *testing.B, n int, stream bool) *cdcEnv {
	b.StopTimer()
	e := newPG(b)
	prefix := "pt_b"
	if !stream {
		prefix = "cdcsnap_b"
	}
	c := &cdcEnv{pgEnv: e, pub: fmt.Sprintf("%spub_%d", prefix, time.Now().UnixNano()), slot: fmt.Sprintf("%sslot_%d", prefix, time.Now().UnixNano())}
	b.Cleanup(func() { dropCDC(b, c.pub, c.slot) })
	table := c.table("b")
	c.exec("CREATE TABLE " + table + " (id int PRIMARY KEY, name text, amount float8, at timestamptz)")
	if stream {
		c.exec("CREATE PUBLICATION " + quote(c.pub) + " FOR TABLE " + table)
		c.exec("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", c.slot)
	}
	for i := 0; i < n; i += 1000 {
		c.exec(fmt.Sprintf("INSERT INTO %s SELECT g, 'name ' || g, g * 1.5, now() FROM generate_series(%d, %d) g", table, i+1, min(i+1000, n)))
	}
	return c
}

// BenchmarkCDCSource reads b.N changes through the postgres_cdc source
// (decoded, typed records).
func BenchmarkCDCSource(b *testing.B) {
	benchRead(b, cdcConfig(benchCDC(b, b.N, true)))
}

// benchRead opens a postgres_cdc source of cfg, then times reading b.N
// records through it.
func benchRead(b *testing.B, cfg stdlib.Config) {
	s, err := newCDC(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Open(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	got := 0
	for got < b.N {
		recs, err := s.Read(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		got += len(recs)
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "changes/s")
}

// BenchmarkCDCPlain reads b.N changes with a plain pglogrepl loop: parse
// each pgoutput message, no conversion of the values.
func BenchmarkCDCPlain(b *testing.B) {
	c := benchCDC(b, b.N, true)
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, testDSN()+"&replication=database")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pglogrepl.StartReplication(ctx, conn, c.slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + c.pub + "'"}}); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	got := 0
	for got < b.N {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			b.Fatal(err)
		}
		m, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := m.(*pglogrepl.InsertMessage); ok {
			got++
		}
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "changes/s")
}

// BenchmarkCDCSnapshot reads a table of b.N rows through the postgres_cdc
// source's initial snapshot (keyset chunks in the slot's exported
// snapshot; decoded, typed records). The slot is created before the
// timing starts.
func BenchmarkCDCSnapshot(b *testing.B) {
	c := benchCDC(b, b.N, false)
	cfg := cdcConfig(c)
	cfg.Attrs["snapshot"], cfg.Attrs["tables"] = "initial", []any{c.table("b")}
	benchRead(b, cfg)
}
