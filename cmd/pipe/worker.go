package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pipe.dev/pipe/cluster"
	"pipe.dev/pipe/monitor"
	"pipe.dev/pipe/stdlib"
)

func cmdWorker(e *env, args []string) int {
	fs := newFlags(e, "worker", "", `Run a worker of a pipe cluster: the workers of one --cluster share its pipelines through
Kafka's group coordinator, keep definitions, statuses and checkpoints in the topics
<cluster>-configs, <cluster>-status and <cluster>-offsets, and each serve the cluster's REST API. SIGINT/SIGTERM stops the worker's
pipelines (each drains and checkpoints) and leaves the group at once: they move to other workers.`)
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, host:port[,host:port...] (required)")
	name := fs.String("cluster", "", "cluster name: the Kafka group id and the prefix of its topics (required)")
	httpAddr := fs.String("http", "127.0.0.1:8083", "serve the REST API on ADDR (host:port; port 0 picks a free one)")
	advertise := fs.String("advertise-url", "", "the API's URL as other workers and clients reach it (default: http://ADDR)")
	id := fs.String("id", "", "the worker's name in statuses (default host:pid)")
	stateDir := fs.String("state-dir", ".pipe-state", "local directory of each pipeline, DIR/<pipeline>: its components' local state (and its checkpoints with --local-state)")
	localState := fs.Bool("local-state", false, "keep checkpoints in --state-dir (a directory the workers share) instead of the topic <cluster>-offsets")
	session := fs.Duration("session-timeout", 10*time.Second, "a worker silent this long is dropped and its pipelines move")
	rebalance := fs.Duration("rebalance-timeout", 30*time.Second, "how long a rebalance waits for the workers to rejoin")
	replication := fs.Int16("replication-factor", -1, "replication factor of the topics the worker creates (-1: the broker's default)")
	logs := addLogFlags(fs)
	if code, ok := parseFlags(fs, args, func(n int) bool { return n == 0 && *brokers != "" && *name != "" }); !ok {
		return code
	}
	logger, err := logs.logger(e.stderr)
	if err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", monitor.ListenAddr(*httpAddr))
	if err != nil {
		return e.fail(exitUsage, "--http: %v", err)
	}
	url := *advertise
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	if *id == "" {
		host, _ := os.Hostname()
		*id = host + ":" + strconv.Itoa(os.Getpid())
	}
	w, err := cluster.New(ctx, cluster.Config{
		Brokers: strings.Split(*brokers, ","), Cluster: *name, ID: *id, URL: url,
		StateDir: *stateDir, LocalState: *localState, SessionTimeout: *session, RebalanceTimeout: *rebalance,
		ReplicationFactor: *replication, Registry: stdlib.Default, Logger: logger.With("worker", *id),
	})
	if err != nil {
		ln.Close()
		return e.fail(exitUsage, "worker: %v", err)
	}
	srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	logger.Info("serving the cluster's REST API", "url", url, "cluster", *name, "worker", *id)
	err = w.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err != nil {
		return e.fail(exitFindings, "worker: %v", err)
	}
	return exitOK
}

func clusterClient(url string) *cluster.Client {
	return &cluster.Client{URL: url, HTTP: &http.Client{Timeout: time.Minute}}
}

func cmdDeploy(e *env, args []string) int {
	fs := newFlags(e, "deploy", "FILE.pipe", `Deploy a pipeline to a cluster: check it here, then submit it to a worker, which checks it
again and stores it; a pipeline already deployed under its name is replaced (a new version).
The files it imports (.pipe and schema files) are sent with it and stored with its version.
Prints the diagnostics of a broken pipeline (exit 1; the cluster is left unchanged), else where it runs.`)
	url := clusterFlag(fs)
	format := diagFormatFlag(fs)
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the pipeline to run (0: do not wait)")
	if code, ok := parseFlags(fs, args, func(n int) bool { return n == 1 && *url != "" }); !ok {
		return code
	}
	path := fs.Arg(0)
	src, err := os.ReadFile(path)
	if err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	p, code := buildPlan(e, path, *format)
	if p == nil {
		return code
	}
	// The files it imports go with it: a worker reads none of its own.
	imports, err := cluster.ImportedFiles(stdlib.Default, path, src)
	if err != nil {
		return e.fail(exitUsage, "deploy: %v", err)
	}
	ctx := context.Background()
	c := clusterClient(*url)
	d, err := c.DeployBundle(ctx, p.Pipeline, path, src, imports)
	var rej *cluster.Rejected
	if errors.As(err, &rej) {
		// The worker's components differ from ours: show its verdict.
		fmt.Fprintf(e.stderr, "pipe: %v:\n%s", err, rej.JSON)
		return exitFindings
	}
	if err != nil {
		return e.fail(exitUsage, "deploy: %v", err)
	}
	verb := "updated"
	if d.Created {
		verb = "created"
	}
	fmt.Fprintf(e.stdout, "pipeline %s %s, version %d\n", d.Name, verb, d.Version)
	if *wait <= 0 {
		return exitOK
	}
	deadline := time.Now().Add(*wait)
	for {
		st, err := c.Status(ctx, d.Name)
		if err == nil && len(st.Instances) > 0 {
			in := st.Instances[0]
			if in.Version == d.Version && in.State != "unassigned" && in.State != cluster.StateStarting {
				printInstances(e, st)
				if in.State == cluster.StateFailed {
					return exitFindings
				}
				return exitOK
			}
		}
		if time.Now().After(deadline) {
			return e.fail(exitFindings, "pipeline %s is not running after %s; see pipe status --cluster %s %s", d.Name, *wait, *url, d.Name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func printInstances(e *env, st cluster.PipelineStatus) {
	for _, in := range st.Instances {
		worker := in.Assigned
		if worker == "" {
			worker = "-"
		}
		fmt.Fprintf(e.stdout, "%-24s %-10s version %-6d worker %s", in.Instance, in.State, in.Version, worker)
		if in.RecordsIn != 0 || in.RecordsOut != 0 {
			fmt.Fprintf(e.stdout, "  records in %d out %d", in.RecordsIn, in.RecordsOut)
		}
		if in.Error != "" {
			fmt.Fprintf(e.stdout, "  error: %s", in.Error)
		}
		fmt.Fprintln(e.stdout)
	}
}

func cmdStatus(e *env, args []string) int {
	fs := newFlags(e, "status", "[NAME]",
		"Show a cluster's pipelines, or one pipeline, with the worker and state of each instance.")
	url := clusterFlag(fs)
	if code, ok := parseFlags(fs, args, func(n int) bool { return n <= 1 && *url != "" }); !ok {
		return code
	}
	ctx := context.Background()
	c := clusterClient(*url)
	var all []cluster.PipelineStatus
	if fs.NArg() == 1 {
		st, err := c.Status(ctx, fs.Arg(0))
		if err != nil {
			return e.fail(exitFindings, "status: %v", err)
		}
		all = append(all, st)
	} else {
		var err error
		if all, err = c.Pipelines(ctx); err != nil {
			return e.fail(exitUsage, "status: %v", err)
		}
	}
	for _, st := range all {
		printInstances(e, st)
	}
	return exitOK
}

// clusterPipelineArgs parses the arguments of a command that takes a
// cluster's pipeline NAME and --cluster URL; c is nil when the command
// ends with code.
func clusterPipelineArgs(e *env, cmd, help string, args []string) (c *cluster.Client, name string, code int) {
	fs := newFlags(e, cmd, "NAME", help)
	url := clusterFlag(fs)
	if code, ok := parseFlags(fs, args, func(n int) bool { return n == 1 && *url != "" }); !ok {
		return nil, "", code
	}
	return clusterClient(*url), fs.Arg(0), exitOK
}

func cmdUndeploy(e *env, args []string) int {
	c, name, code := clusterPipelineArgs(e, "undeploy",
		"Remove a pipeline from a cluster: its instances stop (each drains and checkpoints).", args)
	if c == nil {
		return code
	}
	if err := c.Undeploy(context.Background(), name); err != nil {
		return e.fail(exitFindings, "undeploy: %v", err)
	}
	fmt.Fprintf(e.stdout, "pipeline %s removed\n", name)
	return exitOK
}

func cmdPause(e *env, args []string) int {
	return clusterTarget(e, "pause", args, "Pause a cluster's pipeline: its instances drain, take a final checkpoint and read nothing\n"+
		"(state paused, also after a move) until pipe resume. Its offsets can be changed only while it is paused.")
}

func cmdResume(e *env, args []string) int {
	return clusterTarget(e, "resume", args, "Resume a paused pipeline of a cluster: its instances start again from their checkpoints.")
}

// clusterTarget runs pipe pause or pipe resume.
func clusterTarget(e *env, verb string, args []string, help string) int {
	c, name, code := clusterPipelineArgs(e, verb, help, args)
	if c == nil {
		return code
	}
	change, done := c.Pause, "paused"
	if verb == "resume" {
		change, done = c.Resume, "resumed"
	}
	if err := change(context.Background(), name); err != nil {
		return e.fail(exitFindings, "%s: %v", verb, err)
	}
	fmt.Fprintf(e.stdout, "pipeline %s %s\n", name, done)
	return exitOK
}
