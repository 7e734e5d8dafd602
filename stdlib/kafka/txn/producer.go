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
// from several goroutines at once; Commit and Abort must not overlap Produce.
type Producer struct {
	cfg   Config
	id    int64
	epoch int16

	mu    sync.Mutex
	seq   map[tp]int32    // next base sequence per partition
	added map[tp]struct{} // partitions in the open transaction
	open  bool
	dead  error
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
	p := &Producer{cfg: cfg, seq: map[tp]int32{}, added: map[tp]struct{}{}}
	err := retry(ctx, func() error {
		res, err := cfg.Client.InitProducerID(ctx, &kafka.InitProducerIDRequest{
			TransactionalID:      cfg.TransactionalID,
			TransactionTimeoutMs: int(cfg.Timeout / time.Millisecond),
			ProducerID:           -1,
			ProducerEpoch:        -1,
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
	if err != nil {
		return nil, fmt.Errorf("txn: init producer id %q: %w", cfg.TransactionalID, err)
	}
	return p, nil
}

// ProducerID returns the producer id and epoch the coordinator assigned.
func (p *Producer) ProducerID() (id int64, epoch int16) { return p.id, p.epoch }

// retry runs f until it succeeds, fails with a non-retriable error, or ctx
// ends; coordinator-busy errors are retried with a short backoff.
func retry(ctx context.Context, f func() error) error {
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

// Produce writes records to one partition inside the open transaction,
// opening one if none is.
func (p *Producer) Produce(ctx context.Context, topic string, partition int, records []protocol.Record) error {
	if len(records) == 0 {
		return nil
	}
	key := tp{topic, partition}
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return p.dead
	}
	_, added := p.added[key]
	p.mu.Unlock()
	if !added {
		if err := p.addPartition(ctx, key); err != nil {
			return p.kill(err)
		}
	}
	p.mu.Lock()
	seq := p.seq[key]
	p.mu.Unlock()

	raw, err := p.encode(records, seq)
	if err != nil {
		return fmt.Errorf("txn: encode batch: %w", err)
	}
	err = retry(ctx, func() error {
		res, err := p.cfg.Client.RawProduce(ctx, &kafka.RawProduceRequest{
			Topic:           topic,
			Partition:       partition,
			RequiredAcks:    kafka.RequireAll,
			TransactionalID: p.cfg.TransactionalID,
			RawRecords:      protocol.RawRecordSet{Reader: bytes.NewReader(raw)},
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
		return p.kill(fmt.Errorf("txn: produce to %s/%d: %w", topic, partition, p.fail(err)))
	}
	p.mu.Lock()
	p.seq[key] = seq + int32(len(records))
	p.mu.Unlock()
	return nil
}

func (p *Producer) kill(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fenced(err) || errors.Is(err, ErrFenced) {
		p.dead = err
	}
	return err
}

func (p *Producer) addPartition(ctx context.Context, key tp) error {
	err := retry(ctx, func() error {
		res, err := p.cfg.Client.AddPartitionsToTxn(ctx, &kafka.AddPartitionsToTxnRequest{
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
	batch := b[prefix:]
	binary.BigEndian.PutUint64(batch[43:], uint64(p.id))
	binary.BigEndian.PutUint16(batch[51:], uint16(p.epoch))
	binary.BigEndian.PutUint32(batch[53:], uint32(baseSeq))
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], crcTable))
	return b, nil
}

// Commit commits the open transaction; with none open it does nothing.
func (p *Producer) Commit(ctx context.Context) error { return p.end(ctx, true) }

// Abort aborts the open transaction; with none open it does nothing.
func (p *Producer) Abort(ctx context.Context) error { return p.end(ctx, false) }

func (p *Producer) end(ctx context.Context, commit bool) error {
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return p.dead
	}
	open := p.open
	p.mu.Unlock()
	if !open {
		return nil
	}
	err := retry(ctx, func() error {
		res, err := p.cfg.Client.EndTxn(ctx, &kafka.EndTxnRequest{
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
		return p.kill(fmt.Errorf("txn: %s transaction %q: %w", verb, p.cfg.TransactionalID, p.fail(err)))
	}
	p.mu.Lock()
	p.open = false
	clear(p.added)
	p.mu.Unlock()
	return nil
}
