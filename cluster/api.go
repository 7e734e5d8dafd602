package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/lang"
)

// maxSource bounds the .pipe text a PUT takes.
const maxSource = 4 << 20

// PipelineStatus is the answer of GET /pipelines/NAME/status, and one
// entry of GET /pipelines.
type PipelineStatus struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
	// Paused says the pipeline's target state is paused.
	Paused bool `json:"paused"`
	// RecordsIn and RecordsOut sum the instances' (as Instance has
	// them).
	RecordsIn  int64      `json:"records_in"`
	RecordsOut int64      `json:"records_out"`
	Instances  []Instance `json:"instances"`
}

// Instance is one instance's assignment and state.
type Instance struct {
	// Assigned is the worker the current generation gives it ("": none);
	// Status.Worker the worker that last wrote its state.
	Assigned string `json:"assigned"`
	Status
	// RecordsIn and RecordsOut count what the instance's current run
	// read from its sources and wrote to its sinks (from the worker that
	// runs it; 0 when it is not running, or that worker does not answer
	// within [counterTimeout]).
	RecordsIn  int64          `json:"records_in"`
	RecordsOut int64          `json:"records_out"`
	Snapshot   *exec.Snapshot `json:"snapshot,omitempty"` // counters, from the worker that runs it
}

// Bundle is the body of a PUT of Content-Type application/json: a
// pipeline and the files it imports (by the path its compilation reads,
// as [ImportedFiles] gives them).
type Bundle struct {
	File    string            `json:"file"`
	Source  string            `json:"source"`
	Imports map[string]string `json:"imports,omitempty"`
}

func isJSON(r *http.Request) bool {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.TrimSpace(ct) == "application/json"
}

// Deployed is the answer of a PUT.
type Deployed struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
	Created bool   `json:"created"`
}

// apiError is the body of every error answer but a rejected pipeline's.
type apiError struct {
	Error string `json:"error"`
}

// Handler returns the worker's REST API.
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", w.health)
	mux.HandleFunc("GET /workers", w.workers)
	mux.HandleFunc("GET /pipelines", w.list)
	mux.HandleFunc("GET /pipelines/{name}", w.get)
	mux.HandleFunc("PUT /pipelines/{name}", w.put)
	mux.HandleFunc("DELETE /pipelines/{name}", w.remove)
	mux.HandleFunc("GET /pipelines/{name}/status", w.status)
	mux.HandleFunc("POST /pipelines/{name}/restart", w.restart)
	mux.HandleFunc("POST /pipelines/{name}/pause", w.pause)
	mux.HandleFunc("POST /pipelines/{name}/resume", w.resume)
	mux.HandleFunc("GET /pipelines/{name}/offsets", w.offsetsGet)
	mux.HandleFunc("PATCH /pipelines/{name}/offsets", w.offsetsPatch)
	mux.HandleFunc("DELETE /pipelines/{name}/offsets", w.offsetsDelete)
	mux.HandleFunc("GET /pipelines/{name}/local", w.local)
	mux.HandleFunc("GET /local", w.local)
	mux.HandleFunc("GET /metrics", w.metrics)
	return mux
}

func writeJSON(rw http.ResponseWriter, code int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func fail(rw http.ResponseWriter, code int, msg string) {
	writeJSON(rw, code, apiError{Error: msg})
}

// health answers 200 once the worker is a member with an assignment.
func (w *Worker) health(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	joined, gen, member := w.joined, w.generation, w.member
	w.mu.Unlock()
	body := map[string]any{"worker": w.cfg.ID, "cluster": w.cfg.Cluster, "member_id": member, "generation": gen, "joined": joined}
	if !joined {
		body["status"] = "joining"
		writeJSON(rw, http.StatusServiceUnavailable, body)
		return
	}
	body["status"] = "ok"
	writeJSON(rw, http.StatusOK, body)
}

// Workers is the answer of GET /workers.
type Workers struct {
	Generation int32    `json:"generation"`
	Members    []Member `json:"members"`
}

func (w *Worker) workers(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	out := Workers{Generation: w.generation, Members: slices.Clone(w.members)}
	w.mu.Unlock()
	if out.Members == nil {
		out.Members = []Member{}
	}
	writeJSON(rw, http.StatusOK, out)
}

// owners returns the member of the current generation running each
// instance, by instance id.
func (w *Worker) owners() map[string]Member {
	w.mu.Lock()
	defer w.mu.Unlock()
	owner := map[string]Member{}
	for _, m := range w.members {
		for _, in := range m.Instances {
			owner[in] = m
		}
	}
	return owner
}

// pipelineStatus gathers a pipeline's instances: where the last generation
// put them (owner), what their workers last wrote and the counters of
// their runs (snaps, as [Worker.gather] returns them).
func (w *Worker) pipelineStatus(d Definition, r *http.Request, owner map[string]Member, snaps map[string]map[string]exec.Snapshot) PipelineStatus {
	sts := map[string]Status{}
	for _, st := range w.store.statusOf(d.Name) {
		sts[st.Instance] = st
	}
	paused, _ := w.store.pausedState(d.Name)
	ps := PipelineStatus{Name: d.Name, Version: d.Version, Paused: paused}
	for _, id := range w.instanceIDs(d) {
		m := owner[id]
		in := Instance{Assigned: m.Worker, Status: sts[id]}
		if in.Status.Instance == "" {
			in.Status = Status{Instance: id, Pipeline: d.Name, State: "unassigned"}
		}
		if s, ok := snaps[m.ID][id]; ok && m.ID != "" {
			in.RecordsIn, in.RecordsOut = counts(s)
			if r.URL.Query().Get("snapshot") != "" {
				in.Snapshot = &s
			}
		}
		ps.RecordsIn += in.RecordsIn
		ps.RecordsOut += in.RecordsOut
		ps.Instances = append(ps.Instances, in)
	}
	return ps
}

// handleOf returns the handle of an instance this worker runs.
func (w *Worker) handleOf(id string) *exec.Handle {
	w.mu.Lock()
	defer w.mu.Unlock()
	if in := w.running[id]; in != nil {
		return in.handle
	}
	return nil
}

func (w *Worker) list(rw http.ResponseWriter, r *http.Request) {
	defs := w.store.definitions()
	slices.SortFunc(defs, func(a, b Definition) int { return strings.Compare(a.Name, b.Name) })
	owner := w.owners()
	var ids []string
	for _, d := range defs {
		ids = append(ids, w.instanceIDs(d)...)
	}
	snaps := w.gather(r.Context(), owner, ids, "")
	out := []PipelineStatus{}
	for _, d := range defs {
		out = append(out, w.pipelineStatus(d, r, owner, snaps))
	}
	writeJSON(rw, http.StatusOK, out)
}

// lookup answers 404 for a pipeline this worker does not know, after
// reading the config topic to its end (a PUT on another worker is seen).
func (w *Worker) lookup(rw http.ResponseWriter, r *http.Request) (Definition, bool) {
	name := r.PathValue("name")
	if err := w.store.catchUp(r.Context(), w.store.config); err != nil {
		fail(rw, http.StatusServiceUnavailable, "reading the cluster's configs: "+err.Error())
		return Definition{}, false
	}
	d, ok := w.store.definition(name)
	if !ok {
		fail(rw, http.StatusNotFound, "no pipeline "+name+" in cluster "+w.cfg.Cluster)
	}
	return d, ok
}

func (w *Worker) get(rw http.ResponseWriter, r *http.Request) {
	if d, ok := w.lookup(rw, r); ok {
		writeJSON(rw, http.StatusOK, d)
	}
}

func (w *Worker) status(rw http.ResponseWriter, r *http.Request) {
	if d, ok := w.lookup(rw, r); ok {
		owner := w.owners()
		snaps := w.gather(r.Context(), owner, w.instanceIDs(d), d.Name)
		writeJSON(rw, http.StatusOK, w.pipelineStatus(d, r, owner, snaps))
	}
}

// put checks the pipeline and writes it to the config topic. Any worker
// writes there itself: the topic's one partition orders every write, and
// every worker (the leader among them) applies them in that order, so the
// result is the one a leader serialising the writes would give.
func (w *Worker) put(rw http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	src, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxSource))
	if err != nil {
		fail(rw, http.StatusRequestEntityTooLarge, "reading the pipeline: "+err.Error())
		return
	}
	file := r.URL.Query().Get("file")
	var imports map[string]string
	if isJSON(r) {
		var b Bundle
		if err := json.Unmarshal(src, &b); err != nil {
			fail(rw, http.StatusBadRequest, "reading the bundle: "+err.Error())
			return
		}
		src, imports = []byte(b.Source), b.Imports
		if b.File != "" {
			file = b.File
		}
	}
	if file == "" {
		file = name + ".pipe"
	}
	_, diags, err := Check(w.cfg.Registry, file, src, name, imports)
	var ne *NameError
	switch {
	case errors.As(err, &ne):
		fail(rw, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		fail(rw, http.StatusInternalServerError, "compiling the pipeline: "+err.Error())
		return
	case diags.HasErrors():
		var b bytes.Buffer
		lang.WriteJSON(&b, diags)
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusUnprocessableEntity)
		rw.Write(b.Bytes())
		return
	}
	if err := w.store.catchUp(r.Context(), w.store.config); err != nil {
		fail(rw, http.StatusServiceUnavailable, "reading the cluster's configs: "+err.Error())
		return
	}
	_, existed := w.store.definition(name)
	v, err := w.store.put(r.Context(), Definition{Name: name, File: file, Source: string(src), Imports: imports, Time: time.Now().UTC()})
	if err != nil {
		fail(rw, http.StatusServiceUnavailable, err.Error())
		return
	}
	code := http.StatusOK
	if !existed {
		code = http.StatusCreated
	}
	writeJSON(rw, code, Deployed{Name: name, Version: v, Created: !existed})
}

func (w *Worker) remove(rw http.ResponseWriter, r *http.Request) {
	d, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	ids := w.instanceIDs(d)
	for _, st := range w.store.statusOf(d.Name) {
		if !slices.Contains(ids, st.Instance) {
			ids = append(ids, st.Instance) // of a version with more instances
		}
	}
	if err := w.store.remove(r.Context(), d.Name, ids); err != nil {
		fail(rw, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(rw, http.StatusOK, map[string]any{"name": d.Name, "deleted": true})
}

// restart writes the definition again: a new version, which the worker
// running it restarts (as on any new version).
func (w *Worker) restart(rw http.ResponseWriter, r *http.Request) {
	d, ok := w.lookup(rw, r)
	if !ok {
		return
	}
	d.Time = time.Now().UTC()
	v, err := w.store.put(r.Context(), d)
	if err != nil {
		fail(rw, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(rw, http.StatusOK, Deployed{Name: d.Name, Version: v})
}
