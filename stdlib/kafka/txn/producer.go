package txn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"pipe.dev/pipe/stdlib/retry"
)

// ErrFenced reports that a newer producer with the same transactional.id
// took over: this producer must stop.
var ErrFenced = errors.New("producer fenced by a newer instance with the same transactional id")

// Config configures a [Producer].
type Config struct {
	Client          *kafka.Client // Addr and Transport of the cluster
	TransactionalID string
	// Timeout is the transaction timeout the coordinator enforces; 0 means 60s.
	Timeout time.Duration
	// Compression of produced batches.
	Compression kafka.Compression
}

// Producer writes records inside Kafka transactions. Produce may be called
// from several goroutines at once (one at a time per partition); Commit,
// Abort, Restart and Replay must not overlap Produce or each other.
//
// A request that fails on a lost connection (or times out) interrupts the
// producer: its open transaction may miss records or be gone (a broker
// that restarted aborts it). It keeps every batch handed to the open
// transaction, sends no more, and fails Commit, until [Producer.Restart]
// and [Producer.Replay] start the transaction over. After any other error
// the transaction must not be committed: it lacks the records that failed.
type Producer struct {
	cfg   Config
	cl    *kafka.Client
	id    int64
	epoch int16

	mu    sync.Mutex
	seq   map[tp]int32    // next base sequence per partition
	added map[tp]struct{} // partitions in the open transaction
	open  bool
	kept  []batch // every batch handed to the open transaction, in order
	dead  error   // fenced: final
	broke error   // the interruption, until Restart
}

// batch is an encoded record batch for one partition.
type batch struct {
	tp
	raw []byte
	n   int32 // records
}

type tp struct {
	topic     string
	partition int
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// New initialises a producer for cfg.TransactionalID: older producers with
// the same id are fenced and their open transaction is aborted.
func New(ctx context.Context, cfg Config) (*Producer, error) {
	if cfg.Client == nil {
		return nil, errors.New("txn: no client")
	}
	if cfg.TransactionalID == "" {
		return nil, errors.New("txn: empty transactional id")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	p := &Producer{cfg: cfg, cl: cfg.Client, id: -1, epoch: -1, seq: map[tp]int32{}, added: map[tp]struct{}{}}
	if err := p.init(ctx, -1, -1); err != nil {
		return nil, fmt.Errorf("txn: init producer id %q: %w", cfg.TransactionalID, err)
	}
	return p, nil
}

// init asks for a producer id and epoch: a new one (id -1), or the next
// epoch of id, which the broker grants only while epoch is still id's.
func (p *Producer) init(ctx context.Context, id int64, epoch int16) error {
	return busy(ctx, func() error {
		res, err := p.cl.InitProducerID(ctx, &kafka.InitProducerIDRequest{
			TransactionalID:      p.cfg.TransactionalID,
			TransactionTimeoutMs: int(p.cfg.Timeout / time.Millisecond),
			ProducerID:           int(id),
			ProducerEpoch:        int(epoch),
		})
		if err != nil {
			return err
		}
		if res.Error != nil {
			return res.Error
		}
		if res.Producer == nil {
			return errors.New("no producer session in response")
		}
		p.id, p.epoch = int64(res.Producer.ProducerID), int16(res.Producer.ProducerEpoch)
		return nil
	})
}

// Restart starts over after an interruption, over cl: it asks for the
// next epoch of the producer id (KIP-360), which aborts the open
// transaction unless it committed, and which the broker refuses (ErrFenced)
// when another producer took the transactional id over in between. A
// broker that lost the producer id grants a new one. The batches of the
// open transaction stay kept: Replay sends them into a new one, Forget
// drops them.
func (p *Producer) Restart(ctx context.Context, cl *kafka.Client) error {
	p.cl = cl
	err := p.init(ctx, p.id, p.epoch)
	if errors.Is(err, kafka.InvalidProducerIDMapping) {
		err = p.init(ctx, -1, -1)
	}
	if err != nil {
		return p.interrupt(fmt.Errorf("txn: restart producer %q: %w", p.cfg.TransactionalID, p.fail(err)))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.seq)
	clear(p.added)
	p.open, p.dead, p.broke = false, nil, nil
	return nil
}

// Replay sends every kept batch again, in the new transaction Restart
// began. If it fails, every batch stays kept for the next Restart.
func (p *Producer) Replay(ctx context.Context) error {
	p.mu.Lock()
	kept := p.kept
	p.mu.Unlock()
	for _, b := range kept {
		// A copy: a request cut short may still hold the old bytes.
		if err := p.send(ctx, batch{tp: b.tp, raw: bytes.Clone(b.raw), n: b.n}); err != nil {
			return err
		}
	}
	return nil
}

// Forget drops the kept batches: the transaction that held them is known
// to have committed.
func (p *Producer) Forget() {
	p.mu.Lock()
	p.kept = nil
	p.mu.Unlock()
}

// ProducerID returns the producer id and epoch the coordinator assigned.
func (p *Producer) ProducerID() (id int64, epoch int16) { return p.id, p.epoch }

// busy runs f until it succeeds, fails with a non-retriable error, or ctx
// ends; coordinator-busy errors are retried with a short backoff.
func busy(ctx context.Context, f func() error) error {
	backoff := 20 * time.Millisecond
	for {
		err := f()
		if err == nil || !retriable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

func retriable(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary() || ke == kafka.ConcurrentTransactions
	}
	return false
}

func fenced(err error) bool {
	return errors.Is(err, kafka.ProducerFenced) || errors.Is(err, kafka.InvalidProducerEpoch)
}

func (p *Producer) fail(err error) error {
	if fenced(err) {
		err = fmt.Errorf("%w: %v", ErrFenced, err)
	}
	return err
}

// Produce hands records for one partition to the open transaction, opening
// one if none is, and sends them unless the producer is interrupted. The
// records are kept until the transaction ends: after an error that is not
// ErrFenced they are sent again by Replay.
func (p *Producer) Produce(ctx context.Context, topic string, partition int, records []protocol.Record) error {
	if len(records) == 0 {
		return nil
	}
	raw, err := p.encode(records, 0)
	if err != nil {
		return fmt.Errorf("txn: encode batch: %w", err)
	}
	b := batch{tp: tp{topic, partition}, raw: raw, n: int32(len(records))}
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return p.dead
	}
	p.kept = append(p.kept, b)
	broke := p.broke
	p.mu.Unlock()
	if broke != nil {
		return broke
	}
	return p.send(ctx, b)
}

// send writes one batch into the open transaction with the next sequence
// number of its partition.
func (p *Producer) send(ctx context.Context, b batch) error {
	p.mu.Lock()
	_, added := p.added[b.tp]
	p.mu.Unlock()
	if !added {
		if err := p.addPartition(ctx, b.tp); err != nil {
			return p.interrupt(err)
		}
	}
	p.mu.Lock()
	seq := p.seq[b.tp]
	p.mu.Unlock()
	p.patch(b.raw[4:], seq) // after the record set's size
	err := busy(ctx, func() error {
		res, err := p.cl.RawProduce(ctx, &kafka.RawProduceRequest{
			Topic:           b.topic,
			Partition:       b.partition,
			RequiredAcks:    kafka.RequireAll,
			TransactionalID: p.cfg.TransactionalID,
			RawRecords:      protocol.RawRecordSet{Reader: bytes.NewReader(b.raw)},
		})
		if err != nil {
			return err
		}
		if res.Error != nil && !errors.Is(res.Error, kafka.DuplicateSequenceNumber) {
			return res.Error
		}
		return nil
	})
	if err != nil {
		return p.interrupt(fmt.Errorf("txn: produce to %s/%d: %w", b.topic, b.partition, p.fail(err)))
	}
	p.mu.Lock()
	p.seq[b.tp] = seq + b.n
	p.mu.Unlock()
	return nil
}

// interrupt records err: fencing is final; a lost connection or a request
// that timed out interrupts the producer until Restart.
func (p *Producer) interrupt(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case fenced(err) || errors.Is(err, ErrFenced):
		p.dead = err
	case p.broke == nil && (retry.Network(err) || errors.Is(err, context.DeadlineExceeded)):
		p.broke = err
	}
	return err
}

func (p *Producer) addPartition(ctx context.Context, key tp) error {
	err := busy(ctx, func() error {
		res, err := p.cl.AddPartitionsToTxn(ctx, &kafka.AddPartitionsToTxnRequest{
			TransactionalID: p.cfg.TransactionalID,
			ProducerID:      int(p.id),
			ProducerEpoch:   int(p.epoch),
			Topics:          map[string][]kafka.AddPartitionToTxn{key.topic: {{Partition: key.partition}}},
		})
		if err != nil {
			return err
		}
		for _, parts := range res.Topics {
			for _, pr := range parts {
				if pr.Error != nil {
					return pr.Error
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("txn: add partition %s/%d to transaction: %w", key.topic, key.partition, p.fail(err))
	}
	p.mu.Lock()
	p.added[key] = struct{}{}
	p.open = true
	p.mu.Unlock()
	return nil
}

// encode renders records as one v2 batch (with its 4-byte size prefix)
// carrying this producer's id, epoch and baseSeq.
func (p *Producer) encode(records []protocol.Record, baseSeq int32) ([]byte, error) {
	attrs := protocol.Attributes(p.cfg.Compression) | protocol.Transactional
	rs := protocol.RecordSet{Version: 2, Attributes: attrs, Records: protocol.NewRecordReader(records...)}
	var buf bytes.Buffer
	if _, err := rs.WriteTo(&buf); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	const prefix = 4 // int32 size of the record set
	if len(b) < prefix+61 {
		return nil, fmt.Errorf("batch of %d bytes is too short", len(b))
	}
	p.patch(b[prefix:], baseSeq)
	return b, nil
}

// patch writes this producer's id and epoch and baseSeq into an encoded
// batch and recomputes its CRC.
func (p *Producer) patch(batch []byte, baseSeq int32) {
	binary.BigEndian.PutUint64(batch[43:], uint64(p.id))
	binary.BigEndian.PutUint16(batch[51:], uint16(p.epoch))
	binary.BigEndian.PutUint32(batch[53:], uint32(baseSeq))
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], crcTable))
}

// Commit commits the open transaction; with none open it does nothing.
// An interrupted producer commits nothing and returns the interruption.
// After an error other than ErrFenced the outcome is unknown: the
// transaction may have committed.
func (p *Producer) Commit(ctx context.Context) error { return p.end(ctx, true) }

// Abort aborts the open transaction; with none open it does nothing. It
// drops the kept batches.
func (p *Producer) Abort(ctx context.Context) error { return p.end(ctx, false) }

func (p *Producer) end(ctx context.Context, commit bool) error {
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return p.dead
	}
	if !commit {
		p.kept = nil
	}
	open, broke := p.open, p.broke
	p.mu.Unlock()
	if commit && broke != nil {
		return broke
	}
	if !open {
		return nil
	}
	err := busy(ctx, func() error {
		res, err := p.cl.EndTxn(ctx, &kafka.EndTxnRequest{
			TransactionalID: p.cfg.TransactionalID,
			ProducerID:      int(p.id),
			ProducerEpoch:   int(p.epoch),
			Committed:       commit,
		})
		if err != nil {
			return err
		}
		return res.Error
	})
	if err != nil {
		verb := "commit"
		if !commit {
			verb = "abort"
		}
		return p.interrupt(fmt.Errorf("txn: %s transaction %q: %w", verb, p.cfg.TransactionalID, p.fail(err)))
	}
	p.mu.Lock()
	p.open, p.kept = false, nil
	clear(p.added)
	p.mu.Unlock()
	return nil
}
