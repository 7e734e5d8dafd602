package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
	"pipe.dev/pipe/stdlib/kafka/txn"
)

func txnProducer(t testing.TB, brokers, id string) *txn.Producer {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers), Transport: &kafka.Transport{}}
	p, err := txn.New(t.Context(), txn.Config{Client: cl, TransactionalID: id})
	if err != nil {
		t.Fatalf("new transactional producer: %v", err)
	}
	return p
}

func protoRecords(vals ...string) []protocol.Record {
	out := make([]protocol.Record, len(vals))
	for i, v := range vals {
		out[i] = protocol.Record{Value: protocol.NewBytes([]byte(v))}
	}
	return out
}

func TestReadCommittedSkipsAbortedTransactions(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("txn")
	newTopic(t, brokers, topic, 1)
	p := txnProducer(t, brokers, uniq("tid"))
	ctx := t.Context()

	produce(t, brokers, topic, `{"n":"plain1"}`)
	if err := p.Produce(ctx, topic, 0, protoRecords(`{"n":"aborted1"}`, `{"n":"aborted2"}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, topic, 0, protoRecords(`{"n":"committed1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, topic, 0, protoRecords(`{"n":"committed2"}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, topic, `{"n":"plain2"}`)

	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	got := append(readN(t, src, 4), readFor(t, src, 300*time.Millisecond)...)
	if want := "committed1,committed2,plain1,plain2"; strings.Join(values(got, "n"), ",") != want {
		t.Fatalf("read_committed read %v, want %s", values(got, "n"), want)
	}

	// read_uncommitted sees the aborted records but never the markers.
	unc := openSource(t, config("in", brokers, map[string]any{"topic": topic, "isolation": stdlib.Ident("read_uncommitted")}), nil)
	defer closeAll(t, unc)
	got = append(readN(t, unc, 6), readFor(t, unc, 300*time.Millisecond)...)
	if want := "aborted1,aborted2,committed1,committed2,plain1,plain2"; strings.Join(values(got, "n"), ",") != want {
		t.Fatalf("read_uncommitted read %v, want %s", values(got, "n"), want)
	}
}

func TestTransactionalProducerFencing(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic, id := uniq("fence"), uniq("tid")
	newTopic(t, brokers, topic, 1)
	ctx := t.Context()
	old := txnProducer(t, brokers, id)
	if err := old.Produce(ctx, topic, 0, protoRecords(`{"n":"dangling"}`)); err != nil {
		t.Fatal(err)
	}
	young := txnProducer(t, brokers, id) // fences old and aborts its transaction
	if _, e1 := old.ProducerID(); true {
		if _, e2 := young.ProducerID(); e2 <= e1 {
			t.Errorf("new epoch %d is not above old epoch %d", e2, e1)
		}
	}
	// The stale producer's write may already be refused (the broker
	// reports a fenced epoch or an invalid transaction state); its commit is
	// refused as fenced either way.
	perr := old.Produce(ctx, topic, 0, protoRecords(`{"n":"stale"}`))
	if err := old.Commit(ctx); !errors.Is(err, txn.ErrFenced) {
		t.Fatalf("stale producer commit: err = %v (produce: %v), want ErrFenced", err, perr)
	}
	if err := young.Produce(ctx, topic, 0, protoRecords(`{"n":"fresh"}`)); err != nil {
		t.Fatal(err)
	}
	if err := young.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	got := append(readN(t, src, 1), readFor(t, src, 300*time.Millisecond)...)
	if want := "fresh"; strings.Join(values(got, "n"), ",") != want {
		t.Fatalf("read %v, want %s", values(got, "n"), want)
	}
}

func eosSink(t testing.TB, brokers, topic string, attrs map[string]any) stdlib.Sink {
	t.Helper()
	a := map[string]any{"topic": topic}
	for k, v := range attrs {
		a[k] = v
	}
	cfg := config("out", brokers, a)
	cfg.Pipeline = "eos-" + topic
	cfg.Delivery = stdlib.ExactlyOnce
	snk, err := SinkSpec.NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return snk
}

// TestExactlyOnceSinkFencing: a dangling transaction of a killed instance
// is aborted by the next Open, which fences it. (What an exactly-once sink
// holds and commits is checked by TestContract.)
func TestExactlyOnceSinkFencing(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("eos")
	newTopic(t, brokers, topic, 2)
	ctx := t.Context()
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	snk := eosSink(t, brokers, topic, nil)
	if _, err := snk.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, snk)
	pos := []stdlib.Position{{Source: "in", Partition: "src/0", Offset: 41}, {Source: "in", Partition: "src/1", Offset: 7}}

	// A dangling transaction of a killed instance is aborted by the next Open.
	if err := snk.Write(ctx, records(5, "c")); err != nil {
		t.Fatal(err)
	}
	if err := snk.(*sink).flush(ctx); err != nil {
		t.Fatal(err)
	}
	next := eosSink(t, brokers, topic, nil)
	if _, err := next.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, next)
	if err := snk.Checkpoint(ctx, stdlib.Checkpoint{ID: 2, Positions: pos}); !errors.Is(err, txn.ErrFenced) {
		t.Fatalf("checkpoint of a fenced sink: err = %v, want ErrFenced", err)
	}
	if err := next.Write(ctx, records(3, "d")); err != nil {
		t.Fatal(err)
	}
	pos2 := []stdlib.Position{{Source: "in", Partition: "src/0", Offset: 50}, {Source: "in", Partition: "src/1", Offset: 7}}
	if err := next.Checkpoint(ctx, stdlib.Checkpoint{ID: 3, Positions: pos2}); err != nil {
		t.Fatal(err)
	}
	got := append(readN(t, src, 3), readFor(t, src, 300*time.Millisecond)...)
	if want := "d0,d1,d2"; strings.Join(values(got, "name"), ",") != want {
		t.Fatalf("read %v, want %s", values(got, "name"), want)
	}
	third := eosSink(t, brokers, topic, nil)
	held, err := third.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, third)
	if fmt.Sprint(sortPositions(held)) != fmt.Sprint(pos2) {
		t.Fatalf("sink holds %v, want %v", held, pos2)
	}
}

func sortPositions(ps []stdlib.Position) []stdlib.Position {
	out := append([]stdlib.Position(nil), ps...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Partition < out[i].Partition {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestCompressions(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	for _, delivery := range []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.ExactlyOnce} {
		for _, c := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
			t.Run(string(delivery)+"/"+c, func(t *testing.T) {
				topic := uniq("comp")
				cfg := config("out", brokers, map[string]any{
					"topic": topic, "compression": stdlib.Ident(c), "create_topic": map[string]any{"partitions": int64(2)},
				})
				cfg.Delivery = delivery
				writeAll(t, cfg, records(100, "x"))
				src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
				defer closeAll(t, src)
				got := append(readN(t, src, 100), readFor(t, src, 200*time.Millisecond)...)
				if len(got) != 100 {
					t.Fatalf("read %d records, want 100", len(got))
				}
			})
		}
	}
}

func TestSinkPartitioners(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	for _, part := range []string{"hash", "round_robin", "source"} {
		t.Run(part, func(t *testing.T) {
			topic := uniq("part")
			cfg := config("out", brokers, map[string]any{
				"topic": topic, "partitioner": stdlib.Ident(part), "create_topic": map[string]any{"partitions": int64(4)},
			})
			recs := records(40, "p")
			for i := range recs {
				recs[i].Partition = int32(i % 3)
			}
			writeAll(t, cfg, recs)
			src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
			defer closeAll(t, src)
			got := readN(t, src, 40)
			byPart := map[int32]int{}
			keyPart := map[any]int32{}
			for _, r := range got {
				byPart[r.Partition]++
				keyPart[r.Key] = r.Partition
			}
			switch part {
			case "round_robin":
				for p := range int32(4) {
					if byPart[p] != 10 {
						t.Errorf("round_robin put %d records in partition %d, want 10", byPart[p], p)
					}
				}
			case "source":
				for i := range recs {
					if keyPart[recs[i].Key] != recs[i].Partition {
						t.Errorf("record %v went to partition %d, want its source partition %d", recs[i].Key, keyPart[recs[i].Key], recs[i].Partition)
					}
				}
			case "hash":
				b := &kafka.Murmur2Balancer{Consistent: true}
				for i := range recs {
					k := []byte(recs[i].Key.(string))
					if want := b.Balance(kafka.Message{Key: k}, 0, 1, 2, 3); int(keyPart[recs[i].Key]) != want {
						t.Errorf("key %v in partition %d, want %d", recs[i].Key, keyPart[recs[i].Key], want)
					}
				}
			}
		})
	}
}

// TestSinkPerRecordTopic writes records whose topic is their own (the
// topic they were read from) or set per record (topic := expr, in
// Record.Attrs), as are their key and headers, under both guarantees.
func TestSinkPerRecordTopic(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	a, b := uniq("a"), uniq("b")
	newTopic(t, brokers, a, 1)
	newTopic(t, brokers, b, 1)
	for _, d := range []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.ExactlyOnce} {
		cfg := config("out", brokers, nil)
		cfg.Delivery = d
		cfg.Exprs = []string{"headers", "topic", "key"}
		snk, err := SinkSpec.NewSink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := snk.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		recs := records(4, string(d))
		for i := range recs {
			recs[i].Topic = a
			recs[i].Attrs = []any{map[string]any{"h": "set", "n": int64(i)}, nil, fmt.Sprintf("k%d", i)}
			if i%2 == 1 {
				recs[i].Attrs[1] = b // topic := wins over the record's own
			}
		}
		noTopic := stdlib.Record{Value: map[string]any{"x": int64(1)}}
		err = snk.Write(t.Context(), append(recs, noTopic))
		var rerrs stdlib.RecordErrors
		if !errors.As(err, &rerrs) || len(rerrs) != 1 || rerrs[0].Index != 4 {
			t.Fatalf("write with a record without topic: err = %v, want one RecordError at 4", err)
		}
		if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
			t.Fatal(err)
		}
		closeAll(t, snk)
	}
	for _, topic := range []string{a, b} {
		src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
		got := append(readN(t, src, 4), readFor(t, src, 200*time.Millisecond)...)
		if len(got) != 4 {
			t.Errorf("topic %s has %d records, want 4", topic, len(got))
		}
		for _, r := range got {
			id := fmt.Sprint(r.Value.(map[string]any)["id"])
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if r.Key != "k"+id || len(h) != 2 || h["h"] != "set" || h["n"] != id {
				t.Errorf("topic %s record %s: key %v headers %v", topic, id, r.Key, h)
			}
		}
		closeAll(t, src)
	}
	_ = context.Background
}

func TestExactlyOnceSinkSplitsLargeBatches(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("large")
	newTopic(t, brokers, topic, 1)
	snk := eosSink(t, brokers, topic, nil)
	if _, err := snk.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer closeAll(t, snk)
	recs := records(20000, strings.Repeat("x", 200)) // about 4.5 MB for one partition
	if err := snk.Write(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1}); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	if got := readN(t, src, 20000); len(got) != 20000 {
		t.Fatalf("read %d records, want 20000", len(got))
	}
}

// TestAcquireFencesOtherProcess: two instances of one sink task stand for
// two processes of a pipeline. The one that acquires a source partition
// fences the other's writer for it, aborting its open transaction, and
// reads back the position committed for it; the fenced one fails at its
// next checkpoint, naming the partition. Acquiring again in the same
// process replaces the writer without an error.
func TestAcquireFencesOtherProcess(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("acq")
	newTopic(t, brokers, topic, 1)
	ctx := t.Context()
	from := func(recs []stdlib.Record, partition string, first int64) []stdlib.Record {
		for i := range recs {
			recs[i].Pos = stdlib.Position{Source: "in", Partition: partition, Offset: first + int64(i)}
		}
		return recs
	}
	acquire := func(snk stdlib.Sink, want int64) {
		t.Helper()
		held, err := snk.(stdlib.Acquirer).Acquire(ctx, "in", []string{"src/0"})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case want < 0 && len(held) != 0:
			t.Fatalf("acquire: holds %v, want nothing", held)
		case want >= 0 && (len(held) != 1 || held[0].Offset != want):
			t.Fatalf("acquire: holds %v, want src/0 at %d", held, want)
		}
	}
	cp := func(id uint64, off int64) stdlib.Checkpoint {
		return stdlib.Checkpoint{ID: id, Positions: []stdlib.Position{{Source: "in", Partition: "src/0", Offset: off}}}
	}

	a := openedEOSSink(t, brokers, topic)
	acquire(a, -1)
	if err := a.Write(ctx, from(records(3, "a"), "src/0", 0)); err != nil {
		t.Fatal(err)
	}
	if err := a.Checkpoint(ctx, cp(1, 2)); err != nil {
		t.Fatal(err)
	}
	// Re-acquiring in the same process: the old writer is replaced.
	acquire(a, 2)
	if err := a.Write(ctx, from(records(2, "b"), "src/0", 3)); err != nil {
		t.Fatal(err)
	}
	if err := a.(*sink).flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Another process takes src/0 over while a's transaction is open.
	b := openedEOSSink(t, brokers, topic)
	acquire(b, 2)
	err := a.Checkpoint(ctx, cp(2, 4))
	if !errors.Is(err, txn.ErrFenced) || !strings.Contains(err.Error(), "src/0") {
		t.Fatalf("checkpoint of the fenced process: err = %v, want ErrFenced naming src/0", err)
	}
	if err := b.Write(ctx, from(records(2, "c"), "src/0", 3)); err != nil {
		t.Fatal(err)
	}
	if err := b.Checkpoint(ctx, cp(1, 4)); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	got := append(readN(t, src, 5), readFor(t, src, 300*time.Millisecond)...)
	if want := "a0,a1,a2,c0,c1"; strings.Join(values(got, "name"), ",") != want {
		t.Fatalf("read %v, want %s", values(got, "name"), want)
	}
	acquire(openedEOSSink(t, brokers, topic), 4)
}

// openedEOSSink opens an exactly-once sink that the test closes at its end.
func openedEOSSink(t *testing.T, brokers, topic string) stdlib.Sink {
	t.Helper()
	snk := eosSink(t, brokers, topic, nil)
	if _, err := snk.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(t, snk) })
	return snk
}

// TestCheckpointCutShortKeepsRecordsWithPositions cuts checkpoints short at
// random moments, as a crash would while several partition writers commit,
// and checks after each that a new instance, once it has acquired the
// partitions, holds each partition's position exactly as far as its records
// are visible to read_committed readers.
func TestCheckpointCutShortKeepsRecordsWithPositions(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("cut")
	newTopic(t, brokers, topic, 4)
	parts := []string{"src/0", "src/1", "src/2", "src/3"}
	seen := make([]int64, len(parts)) // records visible per output partition
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), nil)
	defer closeAll(t, src)
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	var last []int64 // positions held at the start of the previous round
	partial := 0     // rounds whose checkpoint committed some partitions only
	for round := range rounds {
		snk := eosSink(t, brokers, topic, map[string]any{"partitioner": stdlib.Ident("source")})
		if _, err := snk.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		held, err := snk.(stdlib.Acquirer).Acquire(t.Context(), "in", parts)
		if err != nil {
			t.Fatal(err)
		}
		next := make([]int64, len(parts))
		for _, h := range held {
			for i, p := range parts {
				if h.Partition == p {
					next[i] = h.Offset + 1
				}
			}
		}
		for _, r := range readFor(t, src, 300*time.Millisecond) {
			seen[r.Partition]++
		}
		for i := range parts {
			if seen[i] != next[i] {
				t.Fatalf("round %d: %s is held up to %d, but %d of its records are visible", round, parts[i], next[i]-1, seen[i])
			}
		}
		if last != nil {
			moved := 0
			for i := range parts {
				if next[i] != last[i] {
					moved++
				}
			}
			if moved > 0 && moved < len(parts) {
				partial++
			}
		}
		last = next
		// 50 more records a partition, and a checkpoint cut short.
		var batch []stdlib.Record
		var pos []stdlib.Position
		for i, p := range parts {
			for j := range int64(50) {
				batch = append(batch, stdlib.Record{
					Value: map[string]any{"id": next[i] + j}, Partition: int32(i),
					Pos: stdlib.Position{Source: "in", Partition: p, Offset: next[i] + j},
				})
			}
			pos = append(pos, stdlib.Position{Source: "in", Partition: p, Offset: next[i] + 49})
		}
		if err := snk.Write(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rand.IntN(8000))*time.Microsecond)
		snk.Checkpoint(ctx, stdlib.Checkpoint{ID: uint64(round + 1), Positions: pos})
		cancel()
		// The instance dies here: the next one fences it.
	}
	t.Logf("%d of %d checkpoints were cut short between partitions", partial, rounds-1)
}

// TestReadCommittedFullResponse: a fetch answer that fills up in the middle
// of a partition must still come with that partition's aborted
// transactions (the embedded broker leaves them out when the answer's
// overall limit cuts a partition short, and counts against that limit
// the batch it left out of each earlier full partition), so the source
// asks for room for every partition's limit and a batch more.
func TestReadCommittedFullResponse(t *testing.T) {
	brokers := testBroker(t, devbroker.Options{})
	topic := uniq("full")
	newTopic(t, brokers, topic, 2)
	ctx := t.Context()
	p := txnProducer(t, brokers, uniq("tid"))
	pad := strings.Repeat("x", 300)
	batch := func(prefix string, n int) []protocol.Record {
		var vals []string
		for i := range n {
			vals = append(vals, fmt.Sprintf(`{"n":"%s%d","pad":"%s"}`, prefix, i, pad))
		}
		return protoRecords(vals...)
	}
	// Partition 0 holds more than one fetch's worth, in small batches:
	// the broker counts the batch it leaves out against the whole answer.
	for i := range 8 {
		if err := p.Produce(ctx, topic, 0, batch(fmt.Sprintf("a%d-", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Produce(ctx, topic, 1, batch("b", 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, topic, 1, batch("aborted", 2)); err != nil {
		t.Fatal(err)
	}
	if err := p.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := p.Produce(ctx, topic, 1, batch(fmt.Sprintf("c%d-", i), 2)); err != nil {
			t.Fatal(err)
		}
		if err := p.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic, "fetch_max_bytes": int64(2000)}), nil)
	defer closeAll(t, src)
	got := append(readN(t, src, 17), readFor(t, src, 300*time.Millisecond)...)
	for _, v := range values(got, "n") {
		if strings.HasPrefix(v, "aborted") {
			t.Fatalf("read_committed read %v: records of an aborted transaction", values(got, "n"))
		}
	}
	if len(got) != 17 {
		t.Fatalf("read %d records, want 17: %v", len(got), values(got, "n"))
	}
}
