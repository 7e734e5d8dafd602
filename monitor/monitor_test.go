package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/all"
)

// compile builds the plan of a .pipe source.
func compile(t *testing.T, src string) *plan.Plan {
	t.Helper()
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "test.pipe", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("compile: %v", diags.Err())
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// running is a run of a plan with its server.
type running struct {
	h    *exec.Handle
	srv  *Server
	done chan error
}

// start runs p with a server on a free loopback port; the run is stopped
// and the server closed when the test ends.
func start(t *testing.T, p *plan.Plan, opts Options) *running {
	t.Helper()
	h := exec.NewHandle()
	opts.Addr = "127.0.0.1:0"
	srv, err := Listen(opts, h, p)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{h: h, srv: srv, done: make(chan error, 1)}
	// The state directory is made before the cleanup below is registered, so
	// that it is removed after the run has stopped writing to it.
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- exec.Run(ctx, p, &exec.Config{Handle: h, StateDir: state}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("the run did not stop within 30s")
		}
		srv.Close(context.Background())
	})
	return r
}

// stop stops the run over HTTP and returns its result.
func (r *running) stop(t *testing.T, token string) error {
	t.Helper()
	if code, body := call(t, "POST", r.srv.URL()+"/stop", token); code != http.StatusAccepted {
		t.Fatalf("POST /stop: %d %s", code, body)
	}
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not stop within 30s of POST /stop")
		return nil
	}
}

func call(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// metrics scrapes url/metrics and parses it with the Prometheus text parser.
type metrics map[string]*dto.MetricFamily

func scrape(t *testing.T, url string) metrics {
	t.Helper()
	code, body := call(t, "GET", url+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// get returns the value of the sample of name whose labels include want
// ("k=v" pairs); ok is false when there is none.
func (m metrics) get(name string, want ...string) (float64, bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
next:
	for _, s := range f.Metric {
		have := map[string]string{}
		for _, l := range s.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if p, ok := strings.CutSuffix(v, "*"); ok && strings.HasPrefix(have[k], p) {
				continue // a prefix: a file's partition is its path, '#' and a hash
			}
			if have[k] != v {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (m metrics) must(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	v, ok := m.get(name, want...)
	if !ok {
		t.Fatalf("no sample %s{%s}", name, strings.Join(want, ","))
	}
	return v
}

// eventually scrapes until cond holds.
func eventually(t *testing.T, url, what string, cond func(metrics) bool) metrics {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := scrape(t, url)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// appendLines appends records {"id": i, "v": …} for ids from..to-1 to path;
// v is "bad" (to_int fails) when id%10 == 3. A malformed line follows id
// badAt when it is in the range.
func appendLines(t *testing.T, path string, from, to, badAt int) {
	t.Helper()
	var b strings.Builder
	for i := from; i < to; i++ {
		v := fmt.Sprint(i)
		if i%10 == 3 {
			v = "bad"
		}
		fmt.Fprintf(&b, "{\"id\": %d, \"v\": %q}\n", i, v)
		if i == badAt {
			b.WriteString("this is not json\n")
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
}

const countsPipe = `
pipeline mon_counts {
  checkpoint = 50ms
  delivery   = at_least_once
}

source in: file {
  path     = "DIR/in.jsonl"
  follow   = true
  poll     = 10ms
  on_error = dead_letter(dlq)
}

transform calc: map {
  n := to_int(v)
  on_error = dead_letter(dlq)
}

sink out: file { path = "DIR/out.jsonl" }
sink dlq: file { path = "DIR/dlq.jsonl" }

in -> calc -> out
`

// TestMetricsCounts scrapes /metrics while a pipeline runs and after it
// stopped: exact counts per stage and task, errors by kind, dead-lettered
// records, and the lag of the file read reaching 0.
func TestMetricsCounts(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	appendLines(t, in, 0, 200, 100) // 20 bad values, 1 malformed line
	p := compile(t, strings.ReplaceAll(countsPipe, "DIR", dir))
	r := start(t, p, Options{})
	url := r.srv.URL()
	stage := func(name, kind, component string) []string {
		return []string{"pipeline=mon_counts", "stage=" + name, "kind=" + kind, "component=" + component, "task=0"}
	}
	inL, calcL := stage("in", "source", "file"), stage("calc", "transform", "map")
	outL, dlqL := stage("out", "sink", "file"), stage("dlq", "sink", "file")
	check := func(m metrics, name string, labels []string, want float64) {
		t.Helper()
		if got := m.must(t, name, labels...); got != want {
			t.Errorf("%s{%s} = %v, want %v", name, strings.Join(labels, ","), got, want)
		}
	}
	counts := func(m metrics, lines, bad float64) {
		t.Helper()
		check(m, "pipe_component_received_events_total", inL, lines+1)
		check(m, "pipe_component_sent_events_total", inL, lines)
		check(m, "pipe_component_errors_total", append(inL, "error_type=decode"), 1)
		check(m, "pipe_component_dead_lettered_events_total", inL, 1)
		check(m, "pipe_component_received_events_total", calcL, lines)
		check(m, "pipe_component_sent_events_total", calcL, lines-bad)
		check(m, "pipe_component_errors_total", append(calcL, "error_type=evaluate"), bad)
		check(m, "pipe_component_dead_lettered_events_total", calcL, bad)
		check(m, "pipe_component_skipped_events_total", calcL, 0)
		check(m, "pipe_component_sent_events_total", outL, lines-bad)
		check(m, "pipe_component_received_events_total", dlqL, bad+1)
		check(m, "pipe_component_sent_events_total", dlqL, bad+1)
		check(m, "pipe_source_partition_lag", []string{"stage=in", "partition=" + in + "#*", "unit=bytes"}, 0)
	}
	written := func(out, dlq float64) func(metrics) bool {
		return func(m metrics) bool {
			o, _ := m.get("pipe_component_sent_events_total", outL...)
			d, _ := m.get("pipe_component_sent_events_total", dlqL...)
			return o == out && d == dlq
		}
	}
	m := eventually(t, url, "the first 200 records", written(180, 21))
	counts(m, 200, 20)
	if v := m.must(t, "pipe_run_state", "state=running"); v != 1 {
		t.Errorf("pipe_run_state{state=running} = %v", v)
	}
	if v := m.must(t, "pipe_component_received_bytes_total", inL...); v == 0 {
		t.Error("no bytes counted for the file source")
	}
	if _, ok := m.get("process_cpu_seconds_total"); !ok {
		t.Error("no process metrics")
	}
	if _, ok := m.get("go_goroutines"); !ok {
		t.Error("no Go runtime metrics")
	}

	// OpenMetrics when the scraper asks for it.
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	om, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(string(om), "# EOF\n") ||
		!strings.Contains(string(om), `pipe_component_sent_events_total{component="file",kind="sink",pipeline="mon_counts",stage="out",task="0"} 180.0`) {
		t.Errorf("OpenMetrics answer: %s\n%s", ct, om)
	}

	// More lines while it runs.
	appendLines(t, in, 200, 300, -1)
	m = eventually(t, url, "the next 100 records", written(270, 31))
	counts(m, 300, 30)

	// A checkpoint asked for over HTTP covers everything read.
	code, body := call(t, "POST", url+"/checkpoint", "")
	if code != http.StatusOK {
		t.Fatalf("POST /checkpoint: %d %s", code, body)
	}
	var cp struct{ Checkpoint uint64 }
	json.Unmarshal([]byte(body), &cp)
	m = scrape(t, url)
	if id := m.must(t, "pipe_checkpoint_last_id", "pipeline=mon_counts"); id < float64(cp.Checkpoint) || cp.Checkpoint == 0 {
		t.Errorf("pipe_checkpoint_last_id = %v after POST /checkpoint answered %s", id, body)
	}
	pos := m.must(t, "pipe_source_partition_position", "stage=in", "partition="+in+"#*")
	st, _ := os.Stat(in)
	if pos != float64(st.Size()) {
		t.Errorf("position %v, want the file's size %d", pos, st.Size())
	}
	if c := m.must(t, "pipe_source_partition_committed_position", "stage=in", "partition="+in+"#*"); c != pos {
		t.Errorf("committed position %v, want %v", c, pos)
	}
	if n := m.must(t, "pipe_checkpoints_total", "pipeline=mon_counts"); n < 1 {
		t.Errorf("pipe_checkpoints_total = %v", n)
	}

	if err := r.stop(t, ""); err != nil {
		t.Fatalf("run after POST /stop: %v", err)
	}
	m = scrape(t, url)
	counts(m, 300, 30)
	if v := m.must(t, "pipe_run_state", "state=finished"); v != 1 {
		t.Errorf("after stop: pipe_run_state{state=finished} = %v", v)
	}
	// A sink's bytes are those of its file.
	for _, f := range []struct {
		labels []string
		path   string
	}{{outL, "out.jsonl"}, {dlqL, "dlq.jsonl"}} {
		st, err := os.Stat(filepath.Join(dir, f.path))
		if err != nil {
			t.Fatal(err)
		}
		check(m, "pipe_component_sent_bytes_total", f.labels, float64(st.Size()))
	}
}

const pausePipe = `
pipeline mon_pause {
  checkpoint = 50ms
  delivery   = at_least_once
}
source in: file {
  path   = "DIR/in.jsonl"
  follow = true
  poll   = 10ms
  format = lines
}
sink out: discard {}
in -> out
`

// TestControlAndAuth pauses and resumes a run, reads /health, /ready,
// /status and /offsets, and checks the bearer token.
func TestControlAndAuth(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	appendLines(t, in, 0, 10, -1)
	p := compile(t, strings.ReplaceAll(pausePipe, "DIR", dir))
	const token = "s3cret-token"
	r := start(t, p, Options{Token: token})
	url := r.srv.URL()
	sent := func() float64 {
		code, body := call(t, "GET", url+"/status", token)
		if code != http.StatusOK {
			t.Fatalf("GET /status: %d %s", code, body)
		}
		var st Status
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Stages) < 2 {
			return -1 // starting
		}
		return float64(st.Stages[1].Out)
	}
	waitSent := func(n float64) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); sent() != n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("sink wrote %v records, want %v", sent(), n)
			}
		}
	}
	waitSent(10)

	for _, path := range []string{"/metrics", "/status", "/offsets", "/graph.svg"} {
		if code, body := call(t, "GET", url+path, ""); code != http.StatusUnauthorized || strings.Contains(body, token) {
			t.Errorf("GET %s without the token: %d %s", path, code, body)
		}
		if code, _ := call(t, "GET", url+path, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d", path, code)
		}
	}
	if code, _ := call(t, "POST", url+"/stop", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("POST /stop with a wrong token: %d", code)
	}
	for _, path := range []string{"/health", "/ready", "/"} {
		if code, body := call(t, "GET", url+path, ""); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}

	if code, body := call(t, "POST", url+"/pause", token); code != http.StatusOK {
		t.Fatalf("POST /pause: %d %s", code, body)
	}
	time.Sleep(100 * time.Millisecond) // a Read in progress may finish
	appendLines(t, in, 10, 20, -1)
	time.Sleep(300 * time.Millisecond)
	if n := sent(); n != 10 {
		t.Fatalf("paused, the sink wrote %v records, want 10", n)
	}
	// Checkpoints go on while paused.
	if code, body := call(t, "POST", url+"/checkpoint", token); code != http.StatusOK {
		t.Fatalf("POST /checkpoint while paused: %d %s", code, body)
	}
	if code, body := call(t, "GET", url+"/health", ""); code != http.StatusOK {
		t.Fatalf("GET /health while paused: %d %s", code, body)
	}
	if code, body := call(t, "POST", url+"/resume", token); code != http.StatusOK {
		t.Fatalf("POST /resume: %d %s", code, body)
	}
	waitSent(20)

	code, body := call(t, "GET", url+"/offsets", token)
	var offs exec.OffsetsReport
	if err := json.Unmarshal([]byte(body), &offs); code != http.StatusOK || err != nil || offs.Version != 1 || offs.Pipeline != "mon_pause" {
		t.Fatalf("GET /offsets: %d %v %s", code, err, body)
	}
	if len(offs.Positions) == 0 || offs.Positions[0].Holder != exec.StateHolder || !strings.HasPrefix(offs.Positions[0].Partition, in+"#") {
		t.Fatalf("GET /offsets: %s", body)
	}
	if err := r.stop(t, token); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, "GET", url+"/ready", ""); code != http.StatusServiceUnavailable {
		t.Errorf("GET /ready after the run: %d %s", code, body)
	}
	if code, body := call(t, "GET", url+"/health", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "ended") {
		t.Errorf("GET /health after the run: %d %s", code, body)
	}
	if code, _ := call(t, "POST", url+"/pause", token); code != http.StatusConflict {
		t.Errorf("POST /pause after the run: %d, want 409", code)
	}
}

// TestAddressInUse: a second server on a taken port fails with a clear
// error; an address without a host binds loopback.
func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := &plan.Plan{Version: 1, Pipeline: "x"}
	_, err = Listen(Options{Addr: ":" + port}, exec.NewHandle(), p)
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "127.0.0.1:"+port) {
		t.Fatalf("Listen on a taken port: %v", err)
	}
	for in, want := range map[string]string{"9464": "127.0.0.1:9464", ":9464": "127.0.0.1:9464", "0.0.0.0:1": "0.0.0.0:1", "": "127.0.0.1:0", "[::1]:5": "[::1]:5"} {
		if got := ListenAddr(in); got != want {
			t.Errorf("ListenAddr(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := Listen(Options{TLSCert: "x.pem"}, exec.NewHandle(), p); err == nil {
		t.Error("TLS with a certificate and no key: no error")
	}
	if _, err := Listen(Options{TLSCert: "missing.pem", TLSKey: "missing.key"}, exec.NewHandle(), p); err == nil {
		t.Error("TLS with missing files: no error")
	}
}

// TestNoSecretInAnswers: a secret in a source's path (its partition name)
// appears in no answer; its reference does.
func TestNoSecretInAnswers(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MON_SECRET_DIR", dir)
	appendLines(t, filepath.Join(dir, "in.jsonl"), 0, 20, 5)
	p := compile(t, `
pipeline mon_secret {
  checkpoint = 50ms
  delivery   = at_least_once
}
source in: file {
  path     = "${env:MON_SECRET_DIR}/in.jsonl"
  follow   = true
  poll     = 10ms
  on_error = skip
}
transform calc: map {
  n := to_int(v)
  on_error = skip
}
sink out: discard {}
in -> calc -> out
`)
	r := start(t, p, Options{})
	url := r.srv.URL()
	m := eventually(t, url, "the records", func(m metrics) bool {
		n, _ := m.get("pipe_component_sent_events_total", "stage=out")
		return n == 18
	})
	if _, ok := m.get("pipe_source_partition_position", "partition=${env:MON_SECRET_DIR}/in.jsonl#*"); !ok {
		t.Error("no position labelled with the path's reference")
	}
	if _, err := r.h.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		for _, path := range []string{"/metrics", "/status", "/offsets", "/health", "/graph.svg", "/"} {
			_, body := call(t, "GET", url+path, "")
			if strings.Contains(body, dir) {
				t.Errorf("GET %s shows the secret %q:\n%s", path, dir, body)
			}
		}
	}
	check()
	if _, body := call(t, "GET", url+"/status", ""); !strings.Contains(body, `"record": "${env:MON_SECRET_DIR}/in.jsonl#`) {
		t.Errorf("the last error does not name the record by the path's reference:\n%s", body)
	}
	if err := r.stop(t, ""); err != nil {
		t.Fatal(err)
	}
	check()
}
