package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Definition is a deployed pipeline: one record of the config topic, keyed
// by its name.
type Definition struct {
	Name   string `json:"name"`
	File   string `json:"file"`   // the file name its diagnostics name
	Source string `json:"source"` // the .pipe text
	// Imports holds the files it imports, by the path its compilation
	// reads (see [Check]).
	Imports map[string]string `json:"imports,omitempty"`
	// Version is the offset of the definition's record in the config
	// topic: unique and increasing across the cluster's life. It is not
	// stored in the record; a reader sets it.
	Version int64     `json:"version"`
	Time    time.Time `json:"time"`
}

// Status is one instance's state: one record of the status topic, keyed
// by the instance id, written by the worker that runs it.
type Status struct {
	Instance   string    `json:"instance"`
	Pipeline   string    `json:"pipeline"`
	Worker     string    `json:"worker"`
	State      string    `json:"state"` // starting, running, finished, failed, stopped
	Error      string    `json:"error,omitempty"`
	Version    int64     `json:"version"`    // of the definition it runs
	Generation int32     `json:"generation"` // of the group when written
	Time       time.Time `json:"time"`
}

// Instance states in the status topic.
const (
	StateStarting = "starting" // opening its sources and sinks
	StateRunning  = "running"
	StateFinished = "finished" // its bounded sources are exhausted
	StateFailed   = "failed"   // it stopped on an error; restarted after a pause
	StateStopped  = "stopped"  // its worker stopped it
)

// topicNames are a cluster's two topics.
func configTopic(cluster string) string { return cluster + "-configs" }
func statusTopic(cluster string) string { return cluster + "-status" }

// store holds what a worker read of the config and status topics, and
// writes to them. Both topics have one partition, so each is one ordered
// log: the latest record of a key wins (Kafka's compaction keeps it).
type store struct {
	cl     *kgo.Client
	config string
	status string

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every record read
	next     map[string]int64
	defs     map[string]Definition
	statuses map[string]Status
	paused   map[string]bool // pipelines whose target state is paused
	// onConfig is called, without mu, for each config record read.
	onConfig func(name string, def *Definition)
}

// createTopics creates the cluster's three topics if they do not exist: one
// partition each, cleanup.policy=compact, the replication factor given
// (-1: the broker's default.replication.factor).
func createTopics(ctx context.Context, cl *kgo.Client, cluster string, replication int16) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 30000
	for _, name := range []string{configTopic(cluster), statusTopic(cluster), offsetsTopic(cluster)} {
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic = name
		t.NumPartitions = 1
		t.ReplicationFactor = replication
		for k, v := range map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0"} {
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = k, kmsg.StringPtr(v)
			t.Configs = append(t.Configs, c)
		}
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("creating the cluster's topics: %w", err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			msg := ""
			if t.ErrorMessage != nil {
				msg = ": " + *t.ErrorMessage
			}
			return fmt.Errorf("creating topic %s: %w%s", t.Topic, err, msg)
		}
	}
	return nil
}

func newStore(cl *kgo.Client, cluster string) *store {
	return &store{
		cl: cl, config: configTopic(cluster), status: statusTopic(cluster),
		changed: make(chan struct{}), next: map[string]int64{},
		defs: map[string]Definition{}, statuses: map[string]Status{}, paused: map[string]bool{},
	}
}

// read consumes both topics until ctx is done. cl must consume partition 0
// of both from the start.
func (s *store) read(ctx context.Context) {
	for {
		fs := s.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		type change struct {
			name string
			def  *Definition
		}
		var changes []change
		s.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			s.next[r.Topic] = r.Offset + 1
			key := string(r.Key)
			switch r.Topic {
			case s.config:
				if name, ok := strings.CutPrefix(key, targetPrefix); ok {
					s.readTarget(name, r.Value)
					return
				}
				if r.Value == nil {
					delete(s.defs, key)
					changes = append(changes, change{key, nil})
					return
				}
				var d Definition
				if json.Unmarshal(r.Value, &d) != nil || d.Name != key {
					return // not ours: skipped
				}
				d.Version = r.Offset
				s.defs[key] = d
				changes = append(changes, change{key, &d})
			case s.status:
				if r.Value == nil {
					delete(s.statuses, key)
					return
				}
				var st Status
				if json.Unmarshal(r.Value, &st) != nil {
					return
				}
				// A stopping (or fenced) worker's last word must not
				// hide the state its successor wrote in a later
				// generation. A start always counts: a group that was
				// empty may begin its generations again from 1.
				if old, ok := s.statuses[key]; ok && !supersedes(st, old) {
					return
				}
				s.statuses[key] = st
			}
		})
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		for _, c := range changes {
			if s.onConfig != nil {
				s.onConfig(c.name, c.def)
			}
		}
	}
}

// supersedes reports whether status st, read after old, replaces it.
func supersedes(st, old Status) bool {
	return st.Generation >= old.Generation || st.Worker == old.Worker || st.State == StateStarting
}

// waitRead blocks until the store has read topic up to offset end
// (exclusive), or ctx is done.
func (s *store) waitRead(ctx context.Context, topic string, end int64) error {
	for {
		s.mu.Lock()
		n, ch := s.next[topic], s.changed
		s.mu.Unlock()
		if n >= end {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// catchUp blocks until the store has read everything written to topic
// before it was called.
func (s *store) catchUp(ctx context.Context, topic string) error {
	end, err := listEnd(ctx, s.cl, topic, 0)
	if err != nil {
		return err
	}
	return s.waitRead(ctx, topic, end)
}

// configRead is how far the config topic was read (the next offset).
func (s *store) configRead() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next[s.config]
}

func (s *store) definition(name string) (Definition, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.defs[name]
	return d, ok
}

func (s *store) definitions() []Definition {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Definition, 0, len(s.defs))
	for _, d := range s.defs {
		out = append(out, d)
	}
	return out
}

// statusOf returns the status of every instance of a pipeline.
func (s *store) statusOf(pipeline string) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, st := range s.statuses {
		if st.Pipeline == pipeline {
			out = append(out, st)
		}
	}
	return out
}

// put writes a definition and returns its version once this store has
// read it back.
func (s *store) put(ctx context.Context, d Definition) (int64, error) {
	val, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	r, err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.config, Key: []byte(d.Name), Value: val}).First()
	if err != nil {
		return 0, fmt.Errorf("writing to %s: %w", s.config, err)
	}
	return r.Offset, s.waitRead(ctx, s.config, r.Offset+1)
}

// remove writes the tombstones of a pipeline's definition, target state
// and statuses.
func (s *store) remove(ctx context.Context, name string, instances []string) error {
	recs := []*kgo.Record{{Topic: s.config, Key: []byte(name)}, {Topic: s.config, Key: []byte(targetPrefix + name)}}
	for _, in := range instances {
		recs = append(recs, &kgo.Record{Topic: s.status, Key: []byte(in)})
	}
	res := s.cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return fmt.Errorf("writing to %s: %w", s.config, err)
	}
	for _, r := range res { // in the order the writes completed
		if r.Record.Topic == s.config {
			return s.waitRead(ctx, s.config, r.Record.Offset+1)
		}
	}
	return nil
}

// setStatus writes an instance's status.
func (s *store) setStatus(ctx context.Context, st Status) error {
	val, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.cl.ProduceSync(ctx, &kgo.Record{Topic: s.status, Key: []byte(st.Instance), Value: val}).FirstErr()
}
