package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/monitor"
	"pipe.dev/pipe/stdlib"
)

// forwardedHeader marks a request a worker forwarded to the leader, which
// then serves it whatever it believes: a request is forwarded once.
const forwardedHeader = "X-Pipe-Forwarded"

// forward sends a write to the leader of the current generation, as Kafka
// Connect's followers do, and answers with the leader's answer. It returns
// false when this worker serves the request itself: it is the leader, the
// request was forwarded already, or no leader is known.
func (w *Worker) forward(rw http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get(forwardedHeader) != "" {
		return false
	}
	w.mu.Lock()
	leader := ""
	for _, m := range w.members {
		if m.Leader && m.ID != w.member {
			leader = m.URL
		}
	}
	w.mu.Unlock()
	if leader == "" {
		return false
	}
	u, err := url.Parse(leader)
	if err != nil {
		return false
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.ErrorHandler = func(rw http.ResponseWriter, _ *http.Request, err error) {
		fail(rw, http.StatusBadGateway, "forwarding to the leader "+leader+": "+err.Error())
	}
	r.Header.Set(forwardedHeader, w.cfg.ID)
	p.ServeHTTP(rw, r)
	return true
}

// pause and resume write the pipeline's target state to the config topic:
// the worker running an instance (now or after a move) stops it at once,
// with a final checkpoint, and writes its status "paused"; resume starts
// it again from that checkpoint.
func (w *Worker) pause(rw http.ResponseWriter, r *http.Request)  { w.setTarget(rw, r, true) }
func (w *Worker) resume(rw http.ResponseWriter, r *http.Request) { w.setTarget(rw, r, false) }

func (w *Worker) setTarget(rw http.ResponseWriter, r *http.Request, paused bool) {
	if w.forward(rw, r) {
		return
	}
	d, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	if err := w.store.setTarget(r.Context(), d.Name, paused); err != nil {
		fail(rw, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(rw, http.StatusAccepted, map[string]any{"name": d.Name, "paused": paused})
}

// openOffsets opens the held positions of a pipeline: the checkpoint of
// each instance of its definition in the offsets topic (write: fencing
// each instance's owners) or, with LocalState, in this worker's
// directories; and its sinks'.
func (w *Worker) openOffsets(ctx context.Context, d Definition, write bool) (*exec.Offsets, []string, error) {
	p, err := compileDef(w.cfg.Registry, d)
	if err != nil {
		return nil, nil, err
	}
	var sources []string
	for _, st := range p.Stages {
		if st.Kind == stdlib.SourceKind {
			sources = append(sources, st.Name)
		}
	}
	var stores []exec.InstanceState
	for i, id := range w.instanceIDs(d) {
		open := func() (state.Backend, error) {
			if w.cfg.LocalState {
				return state.Open(w.stateDir(d.Name, i))
			}
			return openKafkaState(ctx, w.kafkaOpts(), w.cfg.Cluster, id, write)
		}
		stores = append(stores, exec.InstanceState{Instance: id, Open: open})
	}
	cfg := &exec.Config{Registry: w.cfg.Registry, StateDir: w.stateDir(d.Name, 0), Logger: w.log}
	o, err := exec.OpenInstanceOffsets(p, cfg, stores)
	return o, sources, err
}

// offsetsError answers an error of the offsets API: 409 while a local
// state directory is in use.
func offsetsError(rw http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, exec.ErrStateLocked) {
		code = http.StatusConflict
	}
	fail(rw, code, err.Error())
}

func (w *Worker) offsetsGet(rw http.ResponseWriter, r *http.Request) {
	d, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	o, _, err := w.openOffsets(r.Context(), d, false)
	if err != nil {
		offsetsError(rw, err)
		return
	}
	defer o.Close()
	held, err := o.Positions(r.Context())
	if err != nil {
		offsetsError(rw, err)
		return
	}
	writeJSON(rw, http.StatusOK, exec.NewOffsetsReport(d.Name, held))
}

// OffsetsChange is the body of PATCH /pipelines/NAME/offsets.
type OffsetsChange struct {
	Offsets []OffsetChange `json:"offsets"`
}

// OffsetChange sets where the pipeline reads a source partition next
// (as `pipe offsets set`); a Next of null forgets the partition's
// positions (as `pipe offsets reset`).
type OffsetChange struct {
	Source    string `json:"source"`
	Partition string `json:"partition"`
	Next      *int64 `json:"next"`
}

// changeOffsets checks that the pipeline is paused, opens its positions
// for writing, applies change and answers with the positions after.
func (w *Worker) changeOffsets(rw http.ResponseWriter, r *http.Request, change func(ctx context.Context, o *exec.Offsets, sources []string) error) {
	if w.forward(rw, r) {
		return
	}
	d, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	if err := w.store.catchUp(r.Context(), w.store.status); err != nil {
		fail(rw, http.StatusServiceUnavailable, "reading the cluster's statuses: "+err.Error())
		return
	}
	paused, _ := w.store.pausedState(d.Name)
	if !paused {
		fail(rw, http.StatusConflict, "pipeline "+d.Name+" is not paused: pause it first (its offsets change only while no instance runs)")
		return
	}
	for _, st := range w.store.statusOf(d.Name) {
		if st.State != StatePaused && st.State != StateStopped {
			fail(rw, http.StatusConflict, fmt.Sprintf("instance %s of pipeline %s is %s, not paused yet: try again once it shows paused", st.Instance, d.Name, st.State))
			return
		}
	}
	o, sources, err := w.openOffsets(r.Context(), d, true)
	if err != nil {
		offsetsError(rw, err)
		return
	}
	defer o.Close()
	if err := change(r.Context(), o, sources); err != nil {
		fail(rw, http.StatusBadRequest, err.Error())
		return
	}
	held, err := o.Positions(r.Context())
	if err != nil {
		offsetsError(rw, err)
		return
	}
	writeJSON(rw, http.StatusOK, exec.NewOffsetsReport(d.Name, held))
}

func (w *Worker) offsetsPatch(rw http.ResponseWriter, r *http.Request) {
	var body OffsetsChange
	data, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxSource))
	if err == nil {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		fail(rw, http.StatusBadRequest, "reading the offsets: "+err.Error())
		return
	}
	for _, c := range body.Offsets {
		if c.Source == "" || c.Partition == "" || c.Next != nil && *c.Next < 0 {
			fail(rw, http.StatusBadRequest, `each offset names a "source", a "partition" and a "next" offset (0 or more; null resets it)`)
			return
		}
	}
	// The request is read before it may be forwarded.
	r.Body = io.NopCloser(strings.NewReader(string(data)))
	w.changeOffsets(rw, r, func(ctx context.Context, o *exec.Offsets, _ []string) error {
		for _, c := range body.Offsets {
			var err error
			if c.Next == nil {
				err = o.Reset(ctx, c.Source, []string{c.Partition})
			} else {
				err = o.Set(ctx, c.Source, c.Partition, *c.Next)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// offsetsDelete forgets the positions of every source, or of ?source=S
// (only of its ?partition=P..., when given).
func (w *Worker) offsetsDelete(rw http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.changeOffsets(rw, r, func(ctx context.Context, o *exec.Offsets, sources []string) error {
		if s := q.Get("source"); s != "" {
			return o.Reset(ctx, s, q["partition"])
		}
		for _, s := range sources {
			if err := o.Reset(ctx, s, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// local answers the snapshots of the instances of a pipeline this worker
// runs, or of every instance it runs (GET /local), for the statuses other
// workers aggregate.
func (w *Worker) local(rw http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	out := map[string]exec.Snapshot{}
	w.mu.Lock()
	var ids []string
	for id := range w.running {
		if p, _ := splitInstance(id); name == "" || p == name {
			ids = append(ids, id)
		}
	}
	w.mu.Unlock()
	for _, id := range ids {
		if h := w.handleOf(id); h != nil {
			out[id] = h.Snapshot(r.Context())
		}
	}
	writeJSON(rw, http.StatusOK, out)
}

// counterTimeout bounds how long a status waits for the workers running
// its instances: a dead worker's instances show no counters.
const counterTimeout = 2 * time.Second

// gather returns the snapshots of the instances ids, by the member owner
// gives each and instance id: this worker's from their handles, the
// others' over their API (GET /pipelines/PIPELINE/local, or GET /local
// when pipeline is ""), asked of all of them at once and awaited for at
// most counterTimeout.
func (w *Worker) gather(ctx context.Context, owner map[string]Member, ids []string, pipeline string) map[string]map[string]exec.Snapshot {
	w.mu.Lock()
	self := w.member
	w.mu.Unlock()
	out := map[string]map[string]exec.Snapshot{}
	remote := map[string]Member{}
	for _, id := range ids {
		m := owner[id]
		switch {
		case m.ID == "":
		case m.ID == self:
			if h := w.handleOf(id); h != nil {
				if out[m.ID] == nil {
					out[m.ID] = map[string]exec.Snapshot{}
				}
				out[m.ID][id] = h.Snapshot(ctx)
			}
		case m.URL != "":
			remote[m.ID] = m
		}
	}
	if len(remote) == 0 {
		return out
	}
	path := "/local"
	if pipeline != "" {
		path = pipelinePath(pipeline) + "/local"
	}
	ctx, cancel := context.WithTimeout(ctx, counterTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range remote {
		wg.Go(func() {
			var got map[string]exec.Snapshot
			c := &Client{URL: m.URL}
			if _, err := c.do(ctx, http.MethodGet, path, nil, &got); err != nil {
				w.log.Debug("reading instances' counters", "worker", m.Worker, "error", err)
				return
			}
			mu.Lock()
			out[m.ID] = got
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// counts sums what a snapshot's sources read and its sinks wrote.
func counts(s exec.Snapshot) (in, out int64) {
	for _, st := range s.Stages {
		switch st.Kind {
		case stdlib.SourceKind:
			in += st.In
		case stdlib.SinkKind:
			out += st.Out
		}
	}
	return in, out
}

// metricsLabel labels each instance's metrics on a worker's /metrics
// ("instance" is the label Prometheus gives every scraped target).
const metricsLabel = "pipe_instance"

// metrics serves the metrics of every instance this worker runs, as `pipe
// run --http` serves a run's, each labelled pipe_instance="NAME/I", and
// the process's.
func (w *Worker) metrics(rw http.ResponseWriter, r *http.Request) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	w.mu.Lock()
	for id, in := range w.running {
		if in.handle != nil && in.plan != nil {
			prometheus.WrapRegistererWith(prometheus.Labels{metricsLabel: id}, reg).MustRegister(monitor.Collector(in.handle, in.plan))
		}
	}
	w.mu.Unlock()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rw, r)
}
