package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/monitor"
)

func cmdTop(e *env, args []string) int {
	fs := newFlags(e, "top", "URL", `Show a running pipeline live, from the /status of its HTTP server (pipe run --http ADDR):
per stage its counts, rate, errors, dead-lettered records, lag and last error.`)
	interval := fs.Duration("interval", time.Second, "how often to refresh")
	once := fs.Bool("once", false, "print one view and exit")
	token := fs.String("token", "", "a ${env:NAME} or ${file:path} reference to the server's bearer token")
	if code, ok := parseFlags(fs, args, func(n int) bool { return n == 1 && *interval > 0 }); !ok {
		return code
	}
	base := strings.TrimSuffix(fs.Arg(0), "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tok := ""
	if *token != "" {
		var err error
		if tok, err = exec.ExpandSecrets(*token, nil, nil); err != nil {
			return e.fail(exitUsage, "top: --token %s: %v", *token, err)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	tty := isTerminal(e.stdout)
	for {
		st, err := fetchStatus(client, base, tok)
		if err != nil {
			return e.fail(exitFindings, "top: %v", err)
		}
		var b strings.Builder
		if tty && !*once {
			b.WriteString("\x1b[H\x1b[2J") // home, clear
		}
		writeTop(&b, st)
		io.WriteString(e.stdout, b.String())
		if *once || st.State == exec.Finished || st.State == exec.Failed {
			return exitOK
		}
		time.Sleep(*interval)
	}
}

func fetchStatus(client *http.Client, base, token string) (*monitor.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/status", nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return nil, fmt.Errorf("%s/status: %s: %s", base, res.Status, strings.TrimSpace(string(body)))
	}
	var st monitor.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s/status: %v", base, err)
	}
	return &st, nil
}

// writeTop draws one view of a pipeline's status.
func writeTop(w io.Writer, st *monitor.Status) {
	state := string(st.State)
	if st.Paused {
		state += " (paused)"
	}
	fmt.Fprintf(w, "%s  %s  health %s  checkpoint %d (%s ago)  up %s\n", st.Pipeline, state, st.Health.Status,
		st.Checkpoint, checkpointAge(st.Snapshot), st.Elapsed.Round(time.Second))
	for _, r := range st.Health.Reasons {
		fmt.Fprintf(w, "  ! %s\n", r)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "  ! %s\n", st.Error)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STAGE\tKIND\tTASKS\tRECEIVED\tSENT\tRATE/S\tERRORS\tDEAD-LETTERED\tLAG\t")
	for _, s := range st.Stages {
		lag := "-"
		if n, unit, ok := stageLag(s); ok {
			lag = fmt.Sprintf("%d %s", n, unit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.0f\t%d\t%d\t%s\t\n", s.Name, string(s.Kind)+": "+s.Component, s.Tasks,
			s.In, s.Out, s.Rate, s.Errors, s.DeadLettered, lag)
	}
	tw.Flush()
	for _, s := range st.Stages {
		if e := s.LastError; e != nil {
			rec := ""
			if e.Record != "" {
				rec = "record " + e.Record + ": "
			}
			fmt.Fprintf(w, "\n%s: last error %s ago at %s: %s%s", s.Name, time.Since(e.Time).Round(time.Second), e.At, rec, e.Message)
		}
	}
	fmt.Fprintln(w)
}
