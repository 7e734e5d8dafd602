package txn

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// TestEncodePatchesProducerFields decodes an encoded batch again: the CRC
// must verify and the producer id, epoch, base sequence and transactional
// attribute must be ours.
func TestEncodePatchesProducerFields(t *testing.T) {
	for _, c := range []kafka.Compression{0, kafka.Gzip, kafka.Snappy, kafka.Lz4, kafka.Zstd} {
		p := &Producer{cfg: Config{Compression: c}, id: 4242, epoch: 7}
		raw, err := p.encode([]protocol.Record{
			{Value: protocol.NewBytes([]byte("a"))},
			{Key: protocol.NewBytes([]byte("k")), Value: protocol.NewBytes([]byte("b"))},
		}, 31)
		if err != nil {
			t.Fatal(err)
		}
		var rs protocol.RecordSet
		if _, err := rs.ReadFrom(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			t.Fatalf("compression %d: decode: %v", c, err)
		}
		st, ok := rs.Records.(*protocol.RecordStream)
		if !ok || len(st.Records) != 1 {
			t.Fatalf("compression %d: records %T", c, rs.Records)
		}
		b, ok := st.Records[0].(*protocol.RecordBatch)
		if !ok {
			t.Fatalf("compression %d: batch %T", c, st.Records[0])
		}
		if b.ProducerID != 4242 || b.ProducerEpoch != 7 || b.BaseSequence != 31 || !b.Attributes.Transactional() {
			t.Fatalf("compression %d: batch id %d epoch %d seq %d attrs %v", c, b.ProducerID, b.ProducerEpoch, b.BaseSequence, b.Attributes)
		}
		n := 0
		for {
			r, err := b.ReadRecord()
			if err != nil {
				break
			}
			v, _ := protocol.ReadAll(r.Value)
			if want := []string{"a", "b"}[n]; string(v) != want {
				t.Errorf("record %d = %q, want %q", n, v, want)
			}
			n++
		}
		if n != 2 {
			t.Fatalf("compression %d: %d records, want 2", c, n)
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	if _, err := New(t.Context(), Config{TransactionalID: "x"}); err == nil {
		t.Error("no client accepted")
	}
	if _, err := New(t.Context(), Config{Client: &kafka.Client{}}); err == nil {
		t.Error("empty transactional id accepted")
	}
}
