package kafka

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// dumpLog logs the batches of one partition between offsets from and to,
// read_uncommitted: producer id and epoch, offsets, transactional or not,
// and the control markers, with the aborted transactions a read_committed
// fetch of the same range reports. A kill test calls it to explain a
// failure.
func dumpLog(t *testing.T, brokers, topic string, partition int, from, to int64) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	var b strings.Builder
	for _, iso := range []int8{0, 1} {
		next := from
		for next < to {
			req := &fetchAPI.Request{ReplicaID: -1, MaxWaitTime: 100, MinBytes: 1, MaxBytes: 8 << 20, IsolationLevel: iso,
				SessionID: -1, SessionEpoch: -1, Topics: []fetchAPI.RequestTopic{{Topic: topic, Partitions: []fetchAPI.RequestPartition{
					{Partition: int32(partition), CurrentLeaderEpoch: -1, FetchOffset: next, LogStartOffset: -1, PartitionMaxBytes: 8 << 20}}}}}
			m, err := tr.RoundTrip(t.Context(), kafka.TCP(brokers), req)
			if err != nil {
				t.Logf("dump %s/%d: %v", topic, partition, err)
				return
			}
			rp := m.(*fetchAPI.Response).Topics[0].Partitions[0]
			if iso == 1 {
				fmt.Fprintf(&b, "read_committed from %d: LSO %d, aborted %v\n", next, rp.LastStableOffset, rp.AbortedTransactions)
				break
			}
			var batches []protocol.RecordReader
			if st, ok := rp.RecordSet.Records.(*protocol.RecordStream); ok {
				batches = st.Records
			} else if rp.RecordSet.Records != nil {
				batches = []protocol.RecordReader{rp.RecordSet.Records}
			}
			start := next
			for _, rr := range batches {
				first, last, n := int64(-1), int64(-1), 0
				for {
					r, err := rr.ReadRecord()
					if errors.Is(err, io.EOF) || err != nil {
						break
					}
					if first < 0 {
						first = r.Offset
					}
					last, n = r.Offset, n+1
					if cb, ok := rr.(*protocol.ControlBatch); ok {
						if cr, err := protocol.ReadControlRecord(r); err == nil {
							fmt.Fprintf(&b, "%d: control pid %d type %d\n", r.Offset, cb.ProducerID, cr.Type)
						}
					}
					closeRecord(r)
				}
				if rb, ok := rr.(*protocol.RecordBatch); ok && n > 0 {
					fmt.Fprintf(&b, "%d-%d: %d records pid %d epoch %d txn %v\n", first, last, n, rb.ProducerID, rb.ProducerEpoch, rb.Attributes.Transactional())
				}
				if last >= next {
					next = last + 1
				}
			}
			if next == start {
				break
			}
		}
	}
	t.Logf("log of %s/%d from %d to %d:\n%s", topic, partition, from, to, b.String())
}
