package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"pipe.dev/pipe/cluster"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
)

func cmdOffsets(e *env, args []string) int {
	fs := newFlags(e, "offsets", "show|reset|set FILE.pipe|PLAN.json, or [show|reset|set] NAME --cluster URL", `Show or change the positions a pipeline resumes from: those of its state store and of every
exactly-once sink that keeps positions in its target (a table, a topic, a sidecar file).
  show                        every position, per source partition and holder
  reset --source S [--partition P]...
                              forget them: the next run reads those partitions as the
                              source's start attribute says, and no sink drops them as replays
  set --source S --partition P --offset N
                              the next run reads the partition from offset N, everywhere
It locks the state directory: it fails while the pipeline runs there.
With --cluster it shows or changes the positions of the cluster's pipeline NAME: the state store
of each of its instances (in the topic <cluster>-offsets) and its sinks'; reset and set change
every instance's, only while it is paused (pipe pause).`)
	cluster := fs.String("cluster", "", "URL of any worker of a cluster: the positions of its pipeline NAME")
	stateDir := fs.String("state-dir", "", "directory of the checkpoint store (default .pipe-state/<pipeline>)")
	format := fs.String("format", "text", "output of show: text or json")
	source := fs.String("source", "", "the source stage whose positions reset or set changes")
	parts := fs.StringArray("partition", nil, "a partition of the source (repeatable; reset: all when none)")
	offset := fs.String("offset", "", "set: the offset the next run reads first")
	if code, ok := parseFlags(fs, args, func(n int) bool { return n == 2 || n == 1 && *cluster != "" }); !ok {
		return code
	}
	args = fs.Args()
	if len(args) == 1 {
		args = []string{"show", args[0]}
	}
	verb, path := args[0], args[1]
	switch verb {
	case "show":
		if *format != "text" && *format != "json" {
			return e.fail(exitUsage, "offsets: --format is text or json, not %q", *format)
		}
	case "reset":
		if *source == "" || *offset != "" {
			return e.fail(exitUsage, "offsets reset takes --source and optionally --partition")
		}
	case "set":
		if *source == "" || len(*parts) != 1 || *offset == "" {
			return e.fail(exitUsage, "offsets set takes --source, one --partition and --offset")
		}
	default:
		fs.Usage()
		return exitUsage
	}
	if *cluster != "" {
		return clusterOffsets(e, *cluster, verb, path, *format, *source, *parts, *offset)
	}
	var p *plan.Plan
	p, code := loadPlan(e, path)
	if p == nil {
		return code
	}
	o, err := exec.OpenOffsets(p, &exec.Config{StateDir: *stateDir})
	if err != nil {
		return e.fail(exitFindings, "offsets %s: %v", p.Pipeline, err)
	}
	defer o.Close()
	ctx := context.Background()
	switch verb {
	case "show":
		held, err := o.Positions(ctx)
		if err != nil {
			return e.fail(exitFindings, "offsets %s: %v", p.Pipeline, err)
		}
		if *format == "json" {
			return printOffsetsJSON(e, p.Pipeline, held)
		}
		printOffsets(e, held)
	case "reset":
		err = o.Reset(ctx, *source, *parts)
	case "set":
		n, ok := parseOffset(e, *offset)
		if !ok {
			return exitUsage
		}
		err = o.Set(ctx, *source, (*parts)[0], n)
	}
	if err != nil {
		return e.fail(exitFindings, "offsets %s: %v", p.Pipeline, err)
	}
	return exitOK
}

// parseOffset reads set's --offset.
func parseOffset(e *env, s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		fmt.Fprintf(e.stderr, "pipe: offsets set: --offset %q is not an offset (0 or more)\n", s)
		return 0, false
	}
	return n, true
}

// clusterOffsets shows or changes the positions of a cluster's pipeline
// name through the REST API of a worker.
func clusterOffsets(e *env, url, verb, name, format, source string, parts []string, offset string) int {
	ctx := context.Background()
	c := clusterClient(url)
	var rep exec.OffsetsReport
	var err error
	switch verb {
	case "show":
		rep, err = c.Offsets(ctx, name)
	case "reset":
		rep, err = c.ResetOffsets(ctx, name, source, parts)
	case "set":
		n, ok := parseOffset(e, offset)
		if !ok {
			return exitUsage
		}
		rep, err = c.SetOffsets(ctx, name, []cluster.OffsetChange{{Source: source, Partition: parts[0], Next: &n}})
	}
	if err != nil {
		return e.fail(exitFindings, "offsets %s: %v", name, err)
	}
	if verb != "show" {
		return exitOK
	}
	if format == "json" {
		return printOffsetsJSON(e, name, rep.Held())
	}
	printOffsets(e, rep.Held())
	return exitOK
}

// printOffsets prints held positions as a table.
func printOffsets(e *env, held []exec.HeldPosition) {
	if len(held) == 0 {
		fmt.Fprintln(e.stdout, "no positions held: the next run starts every source as its start attribute says")
		return
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SOURCE\tPARTITION\tHELD BY\tNEXT OFFSET\tIDENTITY\tSTORED")
	now := time.Now()
	for _, h := range held {
		holder := h.Holder
		switch {
		case h.OfSource:
			holder = fmt.Sprintf("source: %s", h.Holder)
		case h.Component != "":
			holder = fmt.Sprintf("sink %s (%s)", h.Holder, h.Component)
		case h.Instance != "":
			holder = fmt.Sprintf("%s (%s)", h.Holder, h.Instance)
		}
		id := h.Identity
		if id == "" {
			id = "-"
		}
		stored := "-"
		if !h.Time.IsZero() {
			stored = fmt.Sprintf("%s (%s ago)", h.Time.UTC().Format(time.RFC3339), now.Sub(h.Time).Round(time.Second))
		}
		next := strconv.FormatInt(h.Offset+1, 10)
		if h.Offset == math.MaxInt64 {
			next = "end" // the partition was read whole (a postgres_cdc table's snapshot)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Source, h.Partition, holder, next, id, stored)
	}
	w.Flush()
}

func printOffsetsJSON(e *env, pipeline string, held []exec.HeldPosition) int {
	out := exec.NewOffsetsReport(pipeline, held)
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	return exitOK
}
