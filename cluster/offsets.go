package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"pipe.dev/pipe/exec/state"
)

// offsetsTopic is the cluster's compacted topic of instance checkpoints.
func offsetsTopic(cluster string) string { return cluster + "-offsets" }

// offsetsTxnID is the transactional id an instance's checkpoints are
// written with: the same on every worker, so that a new owner fences the
// old one.
func offsetsTxnID(cluster, instance string) string { return cluster + "-offsets-" + instance }

// stateTimeout bounds one Load or Save of a [kafkaState].
const stateTimeout = 30 * time.Second

// kafkaState is an instance's state store in the cluster's offsets topic:
// its record, keyed by the instance id, holds the last completed
// checkpoint in the checkpoint file's format. A writable store writes with
// a transactional producer of its own id ([offsetsTxnID]); opening it
// initialises that producer, which fences every earlier owner of the
// instance (its next Save fails) and aborts a transaction one left open,
// before Load reads. A checkpoint counts once its transaction is
// committed: Save returns after the commit, as the local store's Save
// returns after the file and its directory are synced.
type kafkaState struct {
	opts  []kgo.Opt // seed brokers and the worker's options
	topic string
	key   string
	w     *kgo.Client // transactional; nil when read only
}

// openKafkaState opens instance's store in cluster's offsets topic; write
// fences the instance's earlier owners.
func openKafkaState(ctx context.Context, opts []kgo.Opt, cluster, instance string, write bool) (*kafkaState, error) {
	s := &kafkaState{opts: opts, topic: offsetsTopic(cluster), key: instance}
	if !write {
		return s, nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.TransactionalID(offsetsTxnID(cluster, instance)),
		kgo.TransactionTimeout(10*time.Second),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(stateTimeout),
	)...)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	if _, _, err := cl.ProducerID(fctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("state: taking the instance's checkpoints in %s: %w", s.topic, err)
	}
	s.w = cl
	return s, nil
}

// Load returns the instance's last completed checkpoint.
func (s *kafkaState) Load() (*state.Checkpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	recs, err := readOffsets(ctx, s.opts, s.topic)
	if err != nil {
		return nil, err
	}
	data, ok := recs[s.key]
	if !ok {
		return nil, nil
	}
	return state.Decode(data, s.topic+" record "+s.key)
}

// Save writes cp in a transaction of its own and returns once it is
// committed.
func (s *kafkaState) Save(cp state.Checkpoint) error {
	if s.w == nil {
		return errors.New("state: the store was opened read only")
	}
	data, err := state.Encode(cp)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	if err := s.w.BeginTransaction(); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	rec := &kgo.Record{Topic: s.topic, Key: []byte(s.key), Value: data}
	if err := s.w.ProduceSync(ctx, rec).FirstErr(); err != nil {
		s.w.EndTransaction(ctx, kgo.TryAbort)
		return fmt.Errorf("state: writing the checkpoint to %s: %w", s.topic, err)
	}
	if err := s.w.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("state: committing the checkpoint to %s: %w", s.topic, err)
	}
	return nil
}

// Close closes the producer; a transaction cannot be open.
func (s *kafkaState) Close() error {
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
	return nil
}

// readOffsets reads the offsets topic's committed records to its end and
// returns the latest value of every key (a tombstone removes the key). It
// first waits for transactions open when it starts to end (the last
// stable offset to reach the high watermark), so it sees every checkpoint
// committed before it was called.
func readOffsets(ctx context.Context, opts []kgo.Opt, topic string) (map[string][]byte, error) {
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	high, err := listEnd(ctx, cl, topic, 0)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	end := int64(0)
	for {
		if end, err = listEnd(ctx, cl, topic, 1); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		if end >= high {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("state: a transaction stays open in %s: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	out := map[string][]byte{}
	last := int64(-1)
	for last < end-1 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("state: reading %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("state: reading %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			last = max(last, r.Offset)
			switch {
			case r.Attrs.IsControl():
			case r.Value == nil:
				delete(out, string(r.Key))
			default:
				out[string(r.Key)] = r.Value
			}
		})
	}
	return out, nil
}

// listEnd returns the end of partition 0 of topic: its high watermark
// (isolation 0) or its last stable offset (1).
func listEnd(ctx context.Context, cl *kgo.Client, topic string, isolation int8) (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = isolation
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = 0, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, fmt.Errorf("end of %s: %w", topic, err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("end of %s: no answer", topic)
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return 0, fmt.Errorf("end of %s: %w", topic, err)
	}
	return p.Offset, nil
}

// kafkaOpts are the options of the worker's Kafka clients.
func (w *Worker) kafkaOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(w.cfg.Brokers...)}, w.cfg.KgoOptions...)
}

// openState returns how an instance opens its state store: its record in
// the offsets topic, fencing its earlier owners; nil (the directory
// StateDir/NAME) with LocalState.
func (w *Worker) openState(ctx context.Context, instance string) func() (state.Backend, error) {
	if w.cfg.LocalState {
		return nil
	}
	return func() (state.Backend, error) {
		return openKafkaState(ctx, w.kafkaOpts(), w.cfg.Cluster, instance, true)
	}
}
