package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
)

// ProtocolType is the group protocol type of pipe's workers (Kafka
// Connect's is "connect"): a group of this type is a pipe cluster.
const ProtocolType = "pipe"

// protocolName names the assignor and the metadata format.
const protocolName = "sticky-1"

// Config configures a worker.
type Config struct {
	Brokers []string
	Cluster string // the group id and the prefix of the cluster's topics
	// ID names the worker in statuses and /workers (default host:pid).
	ID string
	// URL is the base URL of the worker's REST API that other workers
	// and clients are told.
	URL string
	// StateDir is the instances' local directory, StateDir/NAME: the
	// state store with LocalState, and the components' own local state.
	StateDir string
	// LocalState keeps each instance's checkpoints in StateDir/NAME
	// (workers that share that directory) instead of the cluster's
	// offsets topic.
	LocalState bool
	// SessionTimeout: a worker that has not heartbeat for this long is
	// dropped from the group and its instances run elsewhere (default 10s).
	SessionTimeout time.Duration
	// RebalanceTimeout bounds how long the group waits for its members to
	// rejoin in a rebalance (default 30s).
	RebalanceTimeout time.Duration
	// ReplicationFactor of the topics the worker creates (-1: the
	// broker's default).
	ReplicationFactor int16
	Registry          *stdlib.Registry
	Logger            *slog.Logger
	// KgoOptions are added to the Kafka client's options (TLS, SASL).
	KgoOptions []kgo.Opt
}

// meta is a member's JoinGroup metadata.
type meta struct {
	Worker  string   `json:"worker"`
	URL     string   `json:"url"`
	Config  int64    `json:"config"`  // how far it read the config topic
	Running []string `json:"running"` // instances it runs now
}

// Member is one worker of a generation, as the leader assigned it.
type Member struct {
	ID        string   `json:"member_id"`
	Worker    string   `json:"worker"`
	URL       string   `json:"url"`
	Leader    bool     `json:"leader"`
	Instances []string `json:"instances"`
}

// assignment is the leader's SyncGroup answer to one member.
type assignment struct {
	Generation int32    `json:"generation"`
	Config     int64    `json:"config"` // the leader had read the config topic this far
	Members    []Member `json:"members"`
	Revoked    []string `json:"revoked,omitempty"` // stop these, then rejoin
}

// Worker is one member of a cluster.
type Worker struct {
	cfg   Config
	cl    *kgo.Client
	store *store
	log   *slog.Logger

	configChanged chan struct{} // a pipeline was added or removed

	mu         sync.Mutex
	member     string
	generation int32
	members    []Member
	joined     bool
	lastBeat   time.Time // the last sync or heartbeat the coordinator took
	running    map[string]*instance
	runCtx     context.Context
	counts     map[int64]int // definition version → its instances
}

// instance is one pipeline instance this worker runs.
type instance struct {
	id      string
	version int64
	cancel  context.CancelFunc
	done    chan struct{}
	handle  *exec.Handle
	quiet   bool // stopped for a deletion: its status is not written

	plan *plan.Plan // of the handle's run
}

// New connects a worker to its brokers and creates the cluster's topics.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	if cfg.Cluster == "" {
		return nil, errors.New("a cluster name is required")
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.RebalanceTimeout <= 0 {
		cfg.RebalanceTimeout = 30 * time.Second
	}
	if cfg.Registry == nil {
		cfg.Registry = stdlib.Default
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = ".pipe-state"
	}
	admin, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KgoOptions...)...)
	if err != nil {
		return nil, err
	}
	err = createTopics(ctx, admin, cfg.Cluster, cfg.ReplicationFactor)
	admin.Close()
	if err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			configTopic(cfg.Cluster): {0: kgo.NewOffset().AtStart()},
			statusTopic(cfg.Cluster): {0: kgo.NewOffset().AtStart()},
		}),
		kgo.ProducerLinger(0),
		// A write that the brokers do not take within this time fails:
		// a worker that stops while they are away must not hang.
		kgo.RecordDeliveryTimeout(15 * time.Second),
	}, cfg.KgoOptions...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg: cfg, cl: cl, store: newStore(cl, cfg.Cluster), log: cfg.Logger,
		configChanged: make(chan struct{}, 1), running: map[string]*instance{}, counts: map[int64]int{},
	}
	w.store.onConfig = w.configRecord
	return w, nil
}

// Run takes part in the cluster until ctx is done; then it stops its
// instances (each drains and takes a final checkpoint) and leaves the
// group at once, so that its work moves without waiting for the session
// timeout.
func (w *Worker) Run(ctx context.Context) error {
	defer w.cl.Close()
	readCtx, stopRead := context.WithCancel(context.Background())
	defer stopRead()
	go w.store.read(readCtx)
	runCtx, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	w.mu.Lock()
	w.runCtx = runCtx
	w.mu.Unlock()
	err := w.loop(ctx)
	w.stopAll(false)
	w.leave()
	return err
}

// loop joins, syncs and heartbeats until ctx is done.
func (w *Worker) loop(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.generation1(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.log.Warn("cluster group", "error", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
	return nil
}

// generation1 joins the group, syncs, applies the assignment and then
// heartbeats until a rebalance is needed. It returns when the worker must
// join again.
func (w *Worker) generation1(ctx context.Context) error {
	w.mu.Lock()
	md, _ := json.Marshal(meta{Worker: w.cfg.ID, URL: w.cfg.URL, Config: w.store.configRead(), Running: w.runningIDs()})
	memberID := w.member
	w.mu.Unlock()

	join := kmsg.NewPtrJoinGroupRequest()
	join.Group = w.cfg.Cluster
	join.SessionTimeoutMillis = int32(w.cfg.SessionTimeout.Milliseconds())
	join.RebalanceTimeoutMillis = int32(w.cfg.RebalanceTimeout.Milliseconds())
	join.ProtocolType = ProtocolType
	join.MemberID = memberID
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = protocolName, md
	join.Protocols = append(join.Protocols, p)
	jr, err := join.RequestWith(ctx, w.cl)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	switch err := kerr.ErrorForCode(jr.ErrorCode); {
	case errors.Is(err, kerr.MemberIDRequired):
		w.setMember(jr.MemberID)
		return nil
	case errors.Is(err, kerr.UnknownMemberID), errors.Is(err, kerr.IllegalGeneration):
		w.lost("the group no longer knows this worker")
		return nil
	case err != nil:
		return fmt.Errorf("join: %w", err)
	}
	w.setMember(jr.MemberID)

	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.Generation, sync.MemberID = w.cfg.Cluster, jr.Generation, jr.MemberID
	sync.ProtocolType, sync.Protocol = kmsg.StringPtr(ProtocolType), kmsg.StringPtr(protocolName)
	if jr.LeaderID == jr.MemberID {
		as, err := w.lead(ctx, jr)
		if err != nil {
			return err
		}
		sync.GroupAssignment = as
	}
	sr, err := sync.RequestWith(ctx, w.cl)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	switch err := kerr.ErrorForCode(sr.ErrorCode); {
	case errors.Is(err, kerr.RebalanceInProgress):
		return nil
	case errors.Is(err, kerr.UnknownMemberID), errors.Is(err, kerr.IllegalGeneration):
		w.lost("the group moved on during the sync")
		return nil
	case err != nil:
		return fmt.Errorf("sync: %w", err)
	}
	var as assignment
	if err := json.Unmarshal(sr.MemberAssignment, &as); err != nil {
		return fmt.Errorf("the leader's assignment: %w", err)
	}
	if err := w.apply(ctx, jr.MemberID, jr.LeaderID == jr.MemberID, as); err != nil {
		return err
	}
	if len(as.Revoked) > 0 {
		return nil // revoked instances are stopped: rejoin to free them
	}
	return w.heartbeat(ctx, jr.MemberID, jr.Generation, jr.LeaderID == jr.MemberID)
}

func (w *Worker) setMember(id string) {
	w.mu.Lock()
	w.member = id
	w.mu.Unlock()
}

// lost handles the group's forgetting this worker (its session expired:
// it was paused, or cut off): other workers may run its instances now, so
// it stops them before it joins again as a new member.
func (w *Worker) lost(why string) {
	w.log.Warn("left the cluster's group: stopping every instance before joining again", "reason", why)
	w.stopAll(false)
	w.mu.Lock()
	w.member, w.joined = "", false
	w.mu.Unlock()
}

// lead computes the generation's assignment from the members' metadata
// and the config topic, read to its end first.
func (w *Worker) lead(ctx context.Context, jr *kmsg.JoinGroupResponse) ([]kmsg.SyncGroupRequestGroupAssignment, error) {
	cctx, cancel := context.WithTimeout(ctx, w.cfg.RebalanceTimeout/2)
	defer cancel()
	if err := w.store.catchUp(cctx, w.store.config); err != nil {
		return nil, fmt.Errorf("reading %s: %w", w.store.config, err)
	}
	var instances []string
	for _, d := range w.store.definitions() {
		instances = append(instances, w.instanceIDs(d)...)
	}
	slices.Sort(instances)
	holders := make([]holder, 0, len(jr.Members))
	metas := map[string]meta{}
	for _, m := range jr.Members {
		var md meta
		json.Unmarshal(m.ProtocolMetadata, &md) // a member we cannot read holds nothing
		metas[m.MemberID] = md
		holders = append(holders, holder{ID: m.MemberID, Running: md.Running})
	}
	pl := assign(holders, instances)
	members := make([]Member, 0, len(holders))
	for _, h := range holders {
		md := metas[h.ID]
		if pl.Assigned[h.ID] == nil {
			pl.Assigned[h.ID] = []string{}
		}
		members = append(members, Member{ID: h.ID, Worker: md.Worker, URL: md.URL, Leader: h.ID == jr.LeaderID, Instances: pl.Assigned[h.ID]})
	}
	slices.SortFunc(members, func(a, b Member) int { return compareStrings(a.Worker, b.Worker) })
	config := w.store.configRead()
	var out []kmsg.SyncGroupRequestGroupAssignment
	for _, h := range holders {
		b, _ := json.Marshal(assignment{Generation: jr.Generation, Config: config, Members: members, Revoked: pl.Revoked[h.ID]})
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = h.ID, b
		out = append(out, a)
	}
	w.log.Info("assigned the cluster's instances", "generation", jr.Generation, "members", len(members), "instances", len(instances))
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// apply stops what the assignment does not give this worker and starts
// what it gives and is not running.
func (w *Worker) apply(ctx context.Context, self string, leader bool, as assignment) error {
	var mine []string
	for _, m := range as.Members {
		if m.ID == self {
			mine = m.Instances
		}
	}
	keep := map[string]bool{}
	for _, in := range mine {
		keep[in] = true
	}
	w.mu.Lock()
	var stop []*instance
	for id, in := range w.running {
		if !keep[id] {
			stop = append(stop, in)
			delete(w.running, id)
		}
	}
	w.generation, w.members, w.joined = as.Generation, as.Members, true
	w.lastBeat = time.Now()
	w.mu.Unlock()
	w.stopInstances(stop, false)
	// The leader assigned from the config topic read to as.Config: read
	// as far before starting what it named.
	if err := w.store.waitRead(ctx, w.store.config, as.Config); err != nil {
		return err
	}
	for _, id := range mine {
		w.start(id)
	}
	w.log.Info("joined the cluster", "generation", as.Generation, "leader", leader, "instances", mine, "revoked", as.Revoked)
	return nil
}

// heartbeat keeps the membership alive until a rebalance starts or, for
// the leader, the set of pipelines changes.
func (w *Worker) heartbeat(ctx context.Context, member string, gen int32, leader bool) error {
	every := min(w.cfg.SessionTimeout/4, time.Second)
	last := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.configChanged:
			if leader {
				return nil // rejoin: a rebalance assigns the new set
			}
			continue
		case <-t.C:
		}
		if time.Since(last) > w.cfg.SessionTimeout {
			// This process was paused (or starved) past its session: the
			// group has dropped it and others may run its instances.
			w.lost("no heartbeat for the session timeout")
			return nil
		}
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.Generation, hb.MemberID = w.cfg.Cluster, gen, member
		hctx, cancel := context.WithTimeout(ctx, every*2)
		resp, err := hb.RequestWith(hctx, w.cl)
		cancel()
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		switch {
		case err == nil:
			last = time.Now()
			w.beat(last)
		case errors.Is(err, kerr.RebalanceInProgress):
			return nil
		case errors.Is(err, kerr.UnknownMemberID), errors.Is(err, kerr.IllegalGeneration), errors.Is(err, kerr.FencedInstanceID):
			w.lost(err.Error())
			return nil
		default:
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(last) > w.cfg.SessionTimeout {
				// The coordinator has dropped us by now: others may run
				// our instances.
				w.lost("no heartbeat for the session timeout: " + err.Error())
				return nil
			}
		}
	}
}

func (w *Worker) beat(t time.Time) {
	w.mu.Lock()
	w.lastBeat = t
	w.mu.Unlock()
}

// isMember reports whether the coordinator took a heartbeat of this worker
// within the session timeout: if not, it may have given the worker's
// instances to others, and none may be started here.
func (w *Worker) isMember() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.joined && time.Since(w.lastBeat) < w.cfg.SessionTimeout
}

// leave leaves the group so that a rebalance starts at once.
func (w *Worker) leave() {
	w.mu.Lock()
	member := w.member
	w.mu.Unlock()
	if member == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group, req.MemberID = w.cfg.Cluster, member
	m := kmsg.NewLeaveGroupRequestMember()
	m.MemberID = member
	req.Members = append(req.Members, m)
	if _, err := req.RequestWith(ctx, w.cl); err != nil {
		w.log.Warn("leaving the cluster's group", "error", err)
	}
}

// instanceCount returns how many instances a definition asks for
// (`instances`, 1 when unset or when it does not compile here).
func (w *Worker) instanceCount(d Definition) int {
	w.mu.Lock()
	n, ok := w.counts[d.Version]
	w.mu.Unlock()
	if ok {
		return n
	}
	n = 1
	if p, err := compileDef(w.cfg.Registry, d); err == nil && p.Instances > 1 {
		n = p.Instances
	}
	w.mu.Lock()
	w.counts[d.Version] = n
	w.mu.Unlock()
	return n
}

// instanceIDs returns the ids of a definition's instances.
func (w *Worker) instanceIDs(d Definition) []string {
	n := w.instanceCount(d)
	out := make([]string, n)
	for i := range n {
		out[i] = InstanceID(d.Name, i)
	}
	return out
}

// configRecord is called for every config record the store reads: a new
// or removed pipeline, or one whose number of instances changed, asks the
// leader for a rebalance; a new version of a pipeline this worker runs
// restarts its instances here (those the new version still has); a
// removed one stops.
func (w *Worker) configRecord(name string, def *Definition) {
	want := map[string]bool{}
	if def != nil {
		for _, id := range w.instanceIDs(*def) {
			want[id] = true
		}
	}
	var stop []*instance
	var again []string
	ran, resized := false, false
	w.mu.Lock()
	for id, in := range w.running {
		if n, _ := splitInstance(id); n != name {
			continue
		}
		ran = true
		if n, ok := w.counts[in.version]; ok && n != len(want) {
			resized = true
		}
		if def == nil || def.Version != in.version {
			delete(w.running, id)
			stop = append(stop, in)
			if want[id] {
				again = append(again, id)
			}
		}
	}
	w.mu.Unlock()
	w.stopInstances(stop, def == nil)
	for _, id := range again {
		w.start(id)
	}
	if !ran || def == nil || resized {
		select {
		case w.configChanged <- struct{}{}:
		default:
		}
	}
}

// runningIDs returns the instances this worker runs; w.mu held.
func (w *Worker) runningIDs() []string {
	ids := make([]string, 0, len(w.running))
	for id := range w.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// start runs an instance unless it runs already.
func (w *Worker) start(id string) {
	name, index := splitInstance(id)
	def, ok := w.store.definition(name)
	if !ok {
		return // removed since: the next generation drops it
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[id] != nil || w.runCtx == nil || w.runCtx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(w.runCtx)
	in := &instance{id: id, version: def.Version, cancel: cancel, done: make(chan struct{})}
	w.running[id] = in
	gen := w.generation
	go w.runInstance(ctx, in, def, gen, index)
}

// stateDir is the state store of instance index of a pipeline:
// STATE_DIR/NAME for the first, STATE_DIR/NAME#INDEX for the others.
func (w *Worker) stateDir(name string, index int) string {
	if index == 0 {
		return filepath.Join(w.cfg.StateDir, name)
	}
	return filepath.Join(w.cfg.StateDir, name+"#"+strconv.Itoa(index))
}

// runInstance runs one instance as `pipe run` runs a pipeline, until its
// context is cancelled; a failed run is started again after a pause that
// doubles up to a minute.
func (w *Worker) runInstance(ctx context.Context, in *instance, def Definition, gen int32, index int) {
	defer close(in.done)
	log := w.log.With("instance", in.id, "version", def.Version)
	status := func(state string, err error, red *exec.Redactor) {
		st := Status{Instance: in.id, Pipeline: def.Name, Worker: w.cfg.ID, State: state, Version: def.Version, Generation: gen, Time: time.Now().UTC()}
		if err != nil {
			st.Error = err.Error()
			if red != nil {
				st.Error = red.Redact(st.Error)
			}
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.store.setStatus(sctx, st); err != nil {
			log.Warn("writing the instance's status", "error", err)
		}
	}
	pause := time.Second
	status(StateStarting, nil, nil)
	for {
		// A paused pipeline's instance runs nothing until resumed.
		resumed := w.awaitResumed(ctx, def.Name, func() {
			status(StatePaused, nil, nil)
			log.Info("instance paused")
		})
		p, err := compileDef(w.cfg.Registry, def)
		red := &exec.Redactor{}
		started := time.Now()
		if resumed && err == nil {
			h := exec.NewHandle()
			w.mu.Lock()
			in.handle, in.plan = h, p
			w.mu.Unlock()
			cfg := &exec.Config{
				Registry: w.cfg.Registry,
				StateDir: w.stateDir(def.Name, index),
				Instance: index,
				Owner:    w.cfg.ID,
				Logger:   slog.New(red.Handler(log.Handler())),
				Redactor: red,
				Handle:   h,
			}
			cfg.OpenState = w.openState(ctx, in.id)
			done := make(chan struct{})
			go func() {
				// "running" once every source and sink is open.
				t := time.NewTicker(50 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
					}
					if st, _ := h.State(); st == exec.Running {
						status(StateRunning, nil, nil)
						log.Info("instance running")
						return
					}
				}
			}()
			rctx, unpause := w.pausable(ctx, def.Name)
			err = exec.Run(rctx, p, cfg)
			unpause()
			close(done)
			if ctx.Err() == nil && rctx.Err() != nil {
				continue // paused: it drained and checkpointed (or stopped opening)
			}
		}
		if ctx.Err() != nil {
			if !in.quiet {
				status(StateStopped, nil, nil)
			}
			if err != nil {
				// Its final checkpoint failed (a sink fenced by the
				// instance's new owner, say): the next owner resumes from
				// what was committed before.
				log.Warn("instance stopped with an error", "error", red.Redact(err.Error()))
			} else {
				log.Info("instance stopped")
			}
			return
		}
		if err == nil {
			status(StateFinished, nil, nil)
			log.Info("instance finished: its sources are exhausted")
			<-ctx.Done()
			return
		}
		wait := pause
		if errors.Is(err, state.ErrLocked) {
			// Its previous owner has not let go of its state yet (it is
			// draining, or paused and about to learn it lost the
			// instance): retry soon, without counting a failure.
			log.Info("instance waits for its state directory", "error", red.Redact(err.Error()))
			wait = 200 * time.Millisecond
		} else {
			if time.Since(started) > 10*pause {
				pause = time.Second // it ran a good while: a new failure
				wait = pause
			}
			status(StateFailed, err, red)
			log.Warn("instance failed; starting it again", "error", red.Redact(err.Error()), "after", wait)
			pause = min(2*pause, time.Minute)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		for !w.isMember() {
			// Not restarted while this worker may have lost it: the
			// group's answer stops it or keeps it.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// stopInstances cancels instances and waits for them to drain.
func (w *Worker) stopInstances(ins []*instance, quiet bool) {
	for _, in := range ins {
		in.quiet = quiet
		in.cancel()
	}
	for _, in := range ins {
		<-in.done
	}
}

// stopAll stops every instance of this worker.
func (w *Worker) stopAll(quiet bool) {
	w.mu.Lock()
	var ins []*instance
	for id, in := range w.running {
		ins = append(ins, in)
		delete(w.running, id)
	}
	w.mu.Unlock()
	w.stopInstances(ins, quiet)
}
