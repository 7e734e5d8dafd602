package monitor

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
)

// DefaultHost is the host an address without one binds: the server is
// reached from this machine only unless an address names another host
// (0.0.0.0:9464 for every interface, as a Kubernetes probe needs).
const DefaultHost = "127.0.0.1"

// Options configures a server. Its zero value serves plain HTTP on a
// free loopback port, without a token.
type Options struct {
	// Addr is host:port, :port or port; without a host it binds
	// DefaultHost. Port 0 picks a free one (see Server.Addr).
	Addr string
	// Token, when set, is the bearer token every path but /, /health
	// and /ready requires.
	Token string
	// TLSCert and TLSKey are PEM files; with both, the server speaks HTTPS.
	TLSCert, TLSKey string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Server serves a run's metrics, health, status, positions and control.
type Server struct {
	h     *exec.Handle
	p     *plan.Plan
	opts  Options
	ln    net.Listener
	srv   *http.Server
	https bool
	done  chan struct{}
}

// ListenAddr returns the address Options.Addr binds: DefaultHost is added
// when it names no host.
func ListenAddr(addr string) string {
	if addr == "" {
		return net.JoinHostPort(DefaultHost, "0")
	}
	if !strings.Contains(addr, ":") {
		return net.JoinHostPort(DefaultHost, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	return net.JoinHostPort(DefaultHost, port)
}

// Listen binds the server's address (an error names an address already in
// use) and starts serving h's run of p.
func Listen(opts Options, h *exec.Handle, p *plan.Plan) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return nil, errors.New("http: TLS needs both a certificate and a key file")
	}
	addr := ListenAddr(opts.Addr)
	s := &Server{h: h, p: p, opts: opts, done: make(chan struct{})}
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)}
	if opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("http: loading the TLS certificate: %w", err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.https = true
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("http: address %s is already in use (another process serves it; pick another port with --http, or port 0 for a free one)", addr)
		}
		return nil, fmt.Errorf("http: %w", err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		var err error
		if s.https {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error("http server stopped", "error", err.Error())
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the server's base URL.
func (s *Server) URL() string {
	scheme := "http"
	if s.https {
		scheme = "https"
	}
	return scheme + "://" + s.Addr()
}

// Close stops the server, letting requests in progress finish until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	reg := newRegistry(s.h, s.p)
	mux.Handle("GET /metrics", s.auth(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})))
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /ready", s.ready)
	mux.Handle("GET /status", s.auth(http.HandlerFunc(s.status)))
	mux.Handle("GET /offsets", s.auth(http.HandlerFunc(s.offsets)))
	mux.Handle("POST /pause", s.auth(http.HandlerFunc(s.pause)))
	mux.Handle("POST /resume", s.auth(http.HandlerFunc(s.resume)))
	mux.Handle("POST /checkpoint", s.auth(http.HandlerFunc(s.checkpoint)))
	mux.Handle("POST /stop", s.auth(http.HandlerFunc(s.stop)))
	mux.HandleFunc("GET /{$}", s.page)
	mux.Handle("GET /graph.svg", s.auth(http.HandlerFunc(s.graph)))
	return mux
}

// auth requires the bearer token, when there is one.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return next
	}
	want := []byte("Bearer " + s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pipe"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required (Authorization: Bearer TOKEN)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// HealthJSON is the answer of /health.
type HealthJSON struct {
	Status        string   `json:"status"` // ok | unhealthy | starting
	State         string   `json:"state"`
	Reasons       []string `json:"reasons,omitempty"`
	CheckpointAge float64  `json:"checkpoint_age_seconds"`
	Bound         float64  `json:"bound_seconds"`
}

func healthJSON(hl exec.Health) HealthJSON {
	out := HealthJSON{Status: "ok", State: string(hl.State), Reasons: hl.Reasons,
		CheckpointAge: hl.CheckpointAge.Seconds(), Bound: hl.Bound.Seconds()}
	switch {
	case hl.State == exec.Starting:
		out.Status = "starting"
	case !hl.OK:
		out.Status = "unhealthy"
	}
	return out
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	hl := s.h.Health()
	code := http.StatusOK
	if !hl.OK {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, healthJSON(hl))
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	state, _ := s.h.State()
	ready := state == exec.Running
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ready, "state": state})
}

// Status is the answer of /status (version 1: fields may be added, never
// renamed).
type Status struct {
	Version     int        `json:"version"`
	Pipeline    string     `json:"pipeline"`
	PlanVersion int        `json:"plan_version"`
	Health      HealthJSON `json:"health"`
	Error       string     `json:"error,omitempty"` // why the run failed
	exec.Snapshot
	// Graph gives each stage's outputs, for drawing.
	Edges []*plan.Edge `json:"edges"`
}

// StatusOf builds the status of h's run of p.
func StatusOf(ctx context.Context, h *exec.Handle, p *plan.Plan) Status {
	st := Status{Version: 1, Pipeline: p.Pipeline, PlanVersion: p.Version, Snapshot: h.Snapshot(ctx), Edges: p.Edges}
	st.Health = healthJSON(h.Health())
	if _, err := h.State(); err != nil {
		st.Error = err.Error()
	}
	return st
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, StatusOf(r.Context(), s.h, s.p))
}

func (s *Server) offsets(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, exec.NewOffsetsReport(s.p.Pipeline, s.h.Positions()))
}

func (s *Server) control(w http.ResponseWriter, err error, ok map[string]any) {
	if err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ok)
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	s.control(w, s.h.Pause(), map[string]any{"paused": true})
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	s.control(w, s.h.Resume(), map[string]any{"paused": false})
}

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	id, err := s.h.Checkpoint(r.Context())
	s.control(w, err, map[string]any{"checkpoint": id})
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	s.opts.Logger.Info("stopping: asked over HTTP; draining in-flight records and taking a final checkpoint")
	s.h.Stop()
	writeJSON(w, http.StatusAccepted, map[string]any{"stopping": true})
}
