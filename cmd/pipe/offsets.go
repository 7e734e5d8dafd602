package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
)

func cmdOffsets(e *env, args []string) int {
	fs := newFlags(e, "offsets", "show|reset|set FILE.pipe|PLAN.json", `Show or change the positions a pipeline resumes from: those of its state store and of every
exactly-once sink that keeps positions in its target (a table, a topic, a sidecar file).
  show                        every position, per source partition and holder
  reset --source S [--partition P]...
                              forget them: the next run reads those partitions as the
                              source's start attribute says, and no sink drops them as replays
  set --source S --partition P --offset N
                              the next run reads the partition from offset N, everywhere
It locks the state directory: it fails while the pipeline runs there.`)
	stateDir := fs.String("state-dir", "", "directory of the checkpoint store (default .pipe-state/<pipeline>)")
	format := fs.String("format", "text", "output of show: text or json")
	source := fs.String("source", "", "the source stage whose positions reset or set changes")
	parts := fs.StringArray("partition", nil, "a partition of the source (repeatable; reset: all when none)")
	offset := fs.String("offset", "", "set: the offset the next run reads first")
	if code, ok := parseFlags(fs, args, nArgs(2)); !ok {
		return code
	}
	verb, path := fs.Arg(0), fs.Arg(1)
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
		n, perr := strconv.ParseInt(*offset, 10, 64)
		if perr != nil || n < 0 {
			return e.fail(exitUsage, "offsets set: --offset %q is not an offset (0 or more)", *offset)
		}
		err = o.Set(ctx, *source, (*parts)[0], n)
	}
	if err != nil {
		return e.fail(exitFindings, "offsets %s: %v", p.Pipeline, err)
	}
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
