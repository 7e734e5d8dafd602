package kafka

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// idResumer records the identity a source gives each partition it resumes.
type idResumer struct {
	mu  sync.Mutex
	ids map[string]string
}

func (r *idResumer) Resume(partition, identity string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]string{}
	}
	r.ids[partition] = identity
	return 0, false
}

// sourceIdentities opens a source on topic and returns the identity it
// resumes each partition with.
func sourceIdentities(t *testing.T, brokers, topic string) map[string]string {
	t.Helper()
	r := &idResumer{}
	src := openSource(t, config("in", brokers, map[string]any{"topic": topic}), r)
	closeAll(t, src)
	return r.ids
}

func startBroker(t *testing.T, o devbroker.Options) string {
	t.Helper()
	b, err := devbroker.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

// TestSourceIdentity: a partition's identity is its cluster's id and its
// topic's id. A topic of the same name on a new broker, or deleted and
// created again, has another; the same broker restarted on its data
// directory keeps it.
func TestSourceIdentity(t *testing.T) {
	dir := t.TempDir()
	a := devbroker.Options{DataDir: dir, Topics: []devbroker.Topic{{Name: "in", Partitions: 2}}}
	b, err := devbroker.Start(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	first := sourceIdentities(t, b.Addr(), "in")
	id := first["in/0"]
	if len(first) != 2 || first["in/1"] != id || strings.Count(id, "/") != 1 || strings.HasPrefix(id, "kfake") {
		t.Fatalf("identities %v, want one <cluster id>/<topic id> for both partitions", first)
	}
	b.Close()
	b, err = devbroker.Start(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if again := sourceIdentities(t, b.Addr(), "in"); again["in/0"] != id {
		t.Fatalf("restarted on its data directory: identity %q, was %q", again["in/0"], id)
	}

	other := startBroker(t, devbroker.Options{Topics: []devbroker.Topic{{Name: "in", Partitions: 2}}})
	if o := sourceIdentities(t, other, "in")["in/0"]; o == id || o == "" {
		t.Fatalf("a new broker's topic of the same name has identity %q, the first %q", o, id)
	}

	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(b.Addr()), Transport: tr}
	res, err := cl.DeleteTopics(t.Context(), &kafka.DeleteTopicsRequest{Topics: []string{"in"}})
	if err != nil || res.Errors["in"] != nil {
		t.Fatalf("delete topic: %v %v", err, res)
	}
	newTopic(t, b.Addr(), "in", 2)
	re := sourceIdentities(t, b.Addr(), "in")["in/0"]
	cluster, _, _ := strings.Cut(id, "/")
	if re == id || !strings.HasPrefix(re, cluster+"/") {
		t.Fatalf("the topic created again has identity %q, before %q", re, id)
	}
}

// eosSinkTask is an exactly-once sink of pipeline p, stage out, task task
// of tasks, writing to topic.
func eosSinkTask(t *testing.T, brokers, p, topic string, task, tasks int, attrs map[string]any) *sink {
	t.Helper()
	a := map[string]any{"topic": topic}
	for k, v := range attrs {
		a[k] = v
	}
	cfg := config("out", brokers, a)
	cfg.Pipeline, cfg.Delivery, cfg.Task, cfg.Tasks = p, stdlib.ExactlyOnce, task, tasks
	snk, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return snk
}

// checkpointAt opens snk, checkpoints pos and closes it, returning what
// Open returned.
func checkpointAt(t *testing.T, snk *sink, pos ...stdlib.Position) []stdlib.Position {
	t.Helper()
	held, err := snk.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := snk.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: pos}); err != nil {
		t.Fatal(err)
	}
	closeAll(t, snk)
	return sortPositions(held)
}

// TestExactlyOnceSinkIdentity: the sink stores each position's identity and
// returns it from Open and Acquire; positions stored without one (by an
// earlier pipe) are read as of unknown identity; positions stored for an
// earlier incarnation of its topic are not held, and when Open creates the
// topic it holds none.
func TestExactlyOnceSinkIdentity(t *testing.T) {
	brokers := startBroker(t, devbroker.Options{})
	topic, p := uniq("eosid"), uniq("p")
	newTopic(t, brokers, topic, 1)
	ctx := t.Context()
	pos := []stdlib.Position{
		{Source: "in", Partition: "src/0", Offset: 41, Identity: "c1/t1"},
		{Source: "in", Partition: "src/1", Offset: 7, Identity: "c1/t1"},
	}
	checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, nil), pos...)
	if held := checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, nil)); fmt.Sprint(held) != fmt.Sprint(pos) {
		t.Fatalf("reopened sink holds %v, want %v", held, pos)
	}
	// The same offset of another incarnation is stored too.
	moved := append([]stdlib.Position(nil), pos...)
	moved[1].Identity = "c2/t1"
	checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, nil), moved...)
	if held := checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, nil), pos...); fmt.Sprint(held) != fmt.Sprint(moved) {
		t.Fatalf("reopened sink holds %v, want %v", held, moved)
	}

	// An acquired partition's position keeps its identity too.
	snk := eosSinkTask(t, brokers, p, topic, 0, 1, nil)
	if _, err := snk.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := snk.Acquire(ctx, "grp", []string{"g/0"}); err != nil {
		t.Fatal(err)
	}
	gpos := stdlib.Position{Source: "grp", Partition: "g/0", Offset: 3, Identity: "c1/t2"}
	if err := snk.Checkpoint(ctx, stdlib.Checkpoint{ID: 2, Positions: append([]stdlib.Position{gpos}, pos...)}); err != nil {
		t.Fatal(err)
	}
	closeAll(t, snk)
	snk = eosSinkTask(t, brokers, p, topic, 0, 1, nil)
	if _, err := snk.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if held, err := snk.Acquire(ctx, "grp", []string{"g/0"}); err != nil || len(held) != 1 || held[0] != gpos {
		t.Fatalf("acquired %v (%v), want %v", held, err, gpos)
	}
	closeAll(t, snk)

	// A position record as pipe wrote it before identities: no identity.
	legacy := stdlib.Position{Source: "old", Partition: "o/0", Offset: 9}
	txid := TransactionalID(p, "out", 0)
	writeRecord(t, brokers, txid, heldKey(txid, legacy), `{"source":"old","partition":"o/0","offset":9}`)
	held := checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, nil))
	if fmt.Sprint(held) != fmt.Sprint(sortPositions(append(pos, legacy))) {
		t.Fatalf("with a position stored without identity the sink holds %v", held)
	}

	// The topic deleted and created again by the sink: nothing it stored
	// for the old one holds, the legacy position included.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr}
	if res, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}}); err != nil || res.Errors[topic] != nil {
		t.Fatalf("delete topic: %v %v", err, res)
	}
	create := map[string]any{"create_topic": map[string]any{"partitions": int64(1)}}
	if held := checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, create), pos[0]); len(held) != 0 {
		t.Fatalf("the sink created its topic and holds %v", held)
	}
	// What it stored since holds, also for a sink that did not create it.
	if held := checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, create)); fmt.Sprint(held) != fmt.Sprint(pos[:1]) {
		t.Fatalf("the sink holds %v, want %v", held, pos[:1])
	}
	// The topic deleted and created again by someone else.
	if res, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}}); err != nil || res.Errors[topic] != nil {
		t.Fatalf("delete topic: %v %v", err, res)
	}
	newTopic(t, brokers, topic, 1)
	if held := checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 1, nil)); len(held) != 0 {
		t.Fatalf("the sink holds %v for a topic created again", held)
	}
}

// writeRecord writes one record to the partition of __pipe_offsets where
// the writer txid keeps its positions, outside any transaction; value ""
// writes a tombstone.
func writeRecord(t *testing.T, brokers, txid, key, value string) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers), Transport: tr}
	meta, err := partitions(t.Context(), cl, OffsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for _, p := range meta[OffsetsTopic] {
		offs = append(offs, p.ID)
	}
	r := kafka.Record{Key: kafka.NewBytes([]byte(key))}
	if value != "" {
		r.Value = kafka.NewBytes([]byte(value))
	}
	res, err := cl.Produce(t.Context(), &kafka.ProduceRequest{Topic: OffsetsTopic, Partition: offsetsPartition(txid, offs),
		RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(r)})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestPositionStore shows and changes what the sink's writers of every
// task hold, on a sink that is not opened, and a reopened sink holds what
// was set. An open transaction of its writers holding positions makes
// SetPositions refuse.
func TestPositionStore(t *testing.T) {
	brokers := startBroker(t, devbroker.Options{})
	topic, p := uniq("ps"), uniq("p")
	newTopic(t, brokers, topic, 2)
	ctx := t.Context()
	at := func(part string, off int64) stdlib.Position {
		return stdlib.Position{Source: "in", Partition: part, Offset: off, Identity: "c/t"}
	}
	other := stdlib.Position{Source: "gen", Partition: "gen/0", Offset: 99}
	checkpointAt(t, eosSinkTask(t, brokers, p, topic, 0, 2, nil), at("in/0", 10), at("in/1", 20), other)
	checkpointAt(t, eosSinkTask(t, brokers, p, topic, 1, 2, nil), at("in/0", 10), at("in/1", 25), other)
	// Another stage's positions are not this one's.
	checkpointAt(t, eosSinkTask(t, brokers, p+"x", topic, 0, 1, nil), at("in/0", 1))

	var ps stdlib.PositionStore = eosSinkTask(t, brokers, p, topic, 0, 2, nil)
	show := func(want string) {
		t.Helper()
		got, err := ps.StoredPositions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != want {
			t.Fatalf("stored positions %v, want %s", got, want)
		}
	}
	show("[gen[gen/0]@99 in[in/0]@10 (c/t) in[in/1]@20 (c/t) in[in/1]@25 (c/t)]")

	if err := ps.SetPositions(ctx, "in", []string{"in/1"}, nil); err != nil {
		t.Fatal(err)
	}
	show("[gen[gen/0]@99 in[in/0]@10 (c/t)]")
	if err := ps.SetPositions(ctx, "in", []string{"in/0"}, []stdlib.Position{at("in/0", 4)}); err != nil {
		t.Fatal(err)
	}
	show("[gen[gen/0]@99 in[in/0]@4 (c/t)]")
	for task := range 2 {
		if held := checkpointAt(t, eosSinkTask(t, brokers, p, topic, task, 2, nil)); fmt.Sprint(held) != "[gen[gen/0]@99 in[in/0]@4 (c/t)]" {
			t.Fatalf("task %d holds %v", task, held)
		}
	}
	if err := ps.SetPositions(ctx, "gen", nil, nil); err != nil {
		t.Fatal(err)
	}
	show("[in[in/0]@4 (c/t)]")

	// A writer of the stage stores positions in a transaction it has not
	// ended (as a run checkpointing, or one killed just then).
	txid := TransactionalID(p, "out", 1)
	w := txnProducer(t, brokers, txid)
	meta, err := partitions(ctx, &kafka.Client{Addr: kafka.TCP(brokers), Transport: &kafka.Transport{}}, OffsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for _, mp := range meta[OffsetsTopic] {
		offs = append(offs, mp.ID)
	}
	v, _ := json.Marshal(heldRecord{Position: at("in/0", 50)})
	if err := w.Produce(ctx, OffsetsTopic, offsetsPartition(txid, offs), []protocol.Record{
		{Key: protocol.NewBytes([]byte(heldKey(txid, at("in/0", 50)))), Value: protocol.NewBytes(v)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := ps.SetPositions(ctx, "in", nil, nil); err == nil || !strings.Contains(err.Error(), "still open") {
		t.Fatalf("SetPositions with a transaction open: %v", err)
	}
	show("[in[in/0]@4 (c/t)]")
	// The next run fences the writer, which aborts it.
	checkpointAt(t, eosSinkTask(t, brokers, p, topic, 1, 2, nil))
	if err := ps.SetPositions(ctx, "in", nil, nil); err != nil {
		t.Fatal(err)
	}
	show("[]")
}
