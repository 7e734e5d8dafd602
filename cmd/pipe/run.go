package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/monitor"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

func cmdRun(e *env, args []string) int {
	fs := newFlags(e, "run", "FILE.pipe|PLAN.json", `Run a pipeline until its bounded sources are exhausted, or until SIGINT/SIGTERM:
the first signal drains in-flight records, takes a final checkpoint and exits 0;
a second exits at once (nothing is lost: the next run resumes from the last checkpoint).`)
	stateDir := fs.String("state-dir", "", "directory of the checkpoint store (default .pipe-state/<pipeline>)")
	logs := addLogFlags(fs)
	statusEvery := fs.Duration("status-interval", 0, "how often to report per-stage counts (default 1s on a terminal, 10s otherwise)")
	quiet := fs.BoolP("quiet", "q", false, "no live status or periodic count lines")
	devBroker := fs.Bool("dev-broker", false, "start an embedded development Kafka broker (not for production) and point ${env:KAFKA_BROKERS} at it")
	devBrokerDir := fs.String("dev-broker-dir", "", "with --dev-broker: keep the broker's data in this directory across runs (default: memory only)")
	memLimit := fs.String("memory-limit", "64MiB", "soft limit of the process's resident memory (the Go heap's limit is this less the binary's resident pages, GOGC 400 under it); 0 keeps Go's defaults, as do GOGC or GOMEMLIMIT in the environment")
	httpAddr := fs.String("http", "", "serve /metrics, /health, /ready, /status, /offsets, control and a status page on ADDR (host:port, :port or port; no host binds 127.0.0.1; port 0 picks a free one); default: the pipeline block's http, else no server")
	httpToken := fs.String("http-token", "", "a ${env:NAME} or ${file:path} reference to the bearer token the server requires (default: the pipeline block's http_token)")
	httpCert := fs.String("http-tls-cert", "", "PEM certificate file: serve HTTPS (with --http-tls-key)")
	httpKey := fs.String("http-tls-key", "", "PEM private key file of --http-tls-cert")
	if code, ok := parseFlags(fs, args, nArgs(1)); !ok {
		return code
	}
	// Signals are caught from the start: one that arrives while the plan is
	// compiled or the broker starts is handled once the run begins.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	path := fs.Arg(0)
	var p *plan.Plan
	p, code := loadPlan(e, path)
	if p == nil {
		return code
	}

	logger, err := logs.logger(e.stderr)
	if err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	// The run adds each secret it resolves to red; every log line is
	// redacted with it, and so is the error Run returns.
	red := &exec.Redactor{}
	logger = slog.New(red.Handler(logger.Handler()))
	var limit int64
	if *memLimit != "0" {
		limit, err = stdlib.ParseSize(*memLimit)
	}
	if err != nil {
		return e.fail(exitUsage, "--memory-limit: %q: %v", *memLimit, err)
	}
	cfg := &exec.Config{StateDir: *stateDir, Logger: logger, MemoryLimit: limit, Redactor: red}
	hopts, err := httpOptions(p, *httpAddr, *httpToken, *httpCert, *httpKey, red)
	if err != nil {
		return e.fail(exitUsage, "%v", red.Redact(err.Error()))
	}
	if hopts != nil {
		hopts.Logger = logger
		cfg.Handle = exec.NewHandle()
		srv, err := monitor.Listen(*hopts, cfg.Handle, p)
		if err != nil {
			return e.fail(exitUsage, "%v", err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Close(ctx)
		}()
		logger.Info("serving metrics, health, status and control", "url", srv.URL(), "token", hopts.Token != "")
	}
	tty := isTerminal(e.stderr)
	if !*quiet {
		cfg.StatusInterval = *statusEvery
		if tty {
			if cfg.StatusInterval == 0 {
				cfg.StatusInterval = time.Second
			}
			cfg.Status = (&liveStatus{w: e.stderr}).update
		} else {
			if cfg.StatusInterval == 0 {
				cfg.StatusInterval = 10 * time.Second
			}
			cfg.Status = func(s exec.Snapshot) { logStatus(logger, s) }
		}
	}

	if *devBroker {
		// Its own context: the broker must outlive the drain after a signal.
		b, err := devbroker.Start(context.Background(), devbroker.Options{Partitions: 1, DataDir: *devBrokerDir})
		if err != nil {
			return e.fail(exitUsage, "dev broker: %v", err)
		}
		defer b.Close()
		os.Setenv("KAFKA_BROKERS", b.Addr())
		logger.Info("development broker started (not for production)", "addr", b.Addr())
	}
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		logger.Info("stopping: draining in-flight records and taking a final checkpoint", "signal", s.String())
		cancel()
		if _, ok := <-sigs; ok {
			logger.Warn("second signal: exiting at once; the next run resumes from the last checkpoint")
			os.Exit(130)
		}
	}()

	if err := exec.Run(ctx, p, cfg); err != nil {
		return e.fail(exitFindings, "run %s: %v", p.Pipeline, err)
	}
	return exitOK
}

// httpOptions returns the server options from the flags, else the plan's
// http attributes; nil when neither asks for a server. The token is
// resolved from its reference and added to red.
func httpOptions(p *plan.Plan, addr, token, cert, key string, red *exec.Redactor) (*monitor.Options, error) {
	o := monitor.Options{Addr: addr, TLSCert: cert, TLSKey: key}
	if h := p.HTTP; h != nil {
		o.Addr = cmp.Or(o.Addr, h.Addr)
		token = cmp.Or(token, h.Token)
		o.TLSCert, o.TLSKey = cmp.Or(o.TLSCert, h.TLSCert), cmp.Or(o.TLSKey, h.TLSKey)
	}
	if o.Addr == "" {
		if token != "" || o.TLSCert != "" || o.TLSKey != "" {
			return nil, errors.New("the http token and TLS settings need an address: --http ADDR or http in the pipeline block")
		}
		return nil, nil
	}
	if token != "" {
		if !strings.HasPrefix(token, "${env:") && !strings.HasPrefix(token, "${file:") || !strings.HasSuffix(token, "}") {
			return nil, errors.New("--http-token takes a ${env:NAME} or ${file:path} reference, not the token itself (a command line is visible to every user of the machine)")
		}
		v, err := exec.ExpandSecrets(token, nil, red)
		if err != nil {
			return nil, fmt.Errorf("http token %s: %w", token, err)
		}
		if v == "" {
			return nil, fmt.Errorf("http token %s is empty", token)
		}
		o.Token = v
	}
	return &o, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func logStatus(logger *slog.Logger, s exec.Snapshot) {
	for _, st := range s.Stages {
		args := []any{"stage", st.Name, "kind", st.Kind, "tasks", st.Tasks,
			"in", st.In, "out", st.Out, "errors", st.Errors, "rate", int64(st.Rate),
			"checkpoint", s.Checkpoint, "checkpoint_age", checkpointAge(s)}
		if lag, unit, ok := stageLag(st); ok {
			args = append(args, "lag", lag, "lag_unit", unit)
		}
		logger.Info("stage", args...)
	}
}

// stageLag sums the lag of a source's partitions.
func stageLag(st exec.StageStatus) (lag int64, unit string, ok bool) {
	for _, p := range st.Partitions {
		if p.HasLag {
			lag, unit, ok = lag+p.Lag, p.LagUnit, true
		}
	}
	return lag, unit, ok
}

// checkpointAge is how long ago the last checkpoint completed ("-": none yet).
func checkpointAge(s exec.Snapshot) string {
	if s.CheckpointTime.IsZero() {
		return "-"
	}
	return s.CheckpointAge.Round(100 * time.Millisecond).String()
}

// liveStatus redraws one line per stage on a terminal.
type liveStatus struct {
	w     io.Writer
	lines int
}

func (l *liveStatus) update(s exec.Snapshot) {
	var b strings.Builder
	if l.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", l.lines) // cursor up
	}
	fmt.Fprintf(&b, "\x1b[2K%s elapsed, checkpoint %d (%s ago)\n", s.Elapsed.Round(time.Second), s.Checkpoint, checkpointAge(s))
	for _, st := range s.Stages {
		fmt.Fprintf(&b, "\x1b[2K  %-20s %-9s in %12d  out %12d  %10.0f rec/s  errors %d",
			st.Name, st.Kind, st.In, st.Out, st.Rate, st.Errors)
		if lag, unit, ok := stageLag(st); ok {
			fmt.Fprintf(&b, "  lag %d %s", lag, unit)
		}
		b.WriteString("\n")
	}
	l.lines = len(s.Stages) + 1
	io.WriteString(l.w, b.String())
}
