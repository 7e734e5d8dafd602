package main

import (
	"fmt"
	"io"
	"pipe.dev/pipe/stdlib"
	"strings"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/monitor"
)

func cmdGraph(e *env, args []string) int {
	fs := newFlags(e, "graph", "FILE", "Draw a pipeline's stage graph in Graphviz dot or Mermaid syntax, or as SVG\n(the drawing of the status page of pipe run --http).")
	format := fs.String("format", "dot", "graph format: dot, mermaid or svg")
	if code, ok := parseFlags(fs, args, nArgs(1)); !ok {
		return code
	}
	if *format != "dot" && *format != "mermaid" && *format != "svg" {
		return e.fail(exitUsage, "unknown --format %q (want dot, mermaid or svg)", *format)
	}
	p, code := buildPlan(e, fs.Arg(0), "text")
	if p == nil {
		return code
	}
	switch *format {
	case "dot":
		writeDot(e.stdout, p)
	case "mermaid":
		writeMermaid(e.stdout, p)
	default:
		monitor.DrawSVG(e.stdout, p)
	}
	return exitOK
}

// stageLabel is "name\nkind: component (xN)".
func stageLabel(s *plan.Stage, sep string) string {
	l := s.Name + sep + string(s.Kind) + ": " + s.Component
	if s.Tasks > 1 {
		l += fmt.Sprintf(" ×%d", s.Tasks)
	}
	if s.Delivery != "" {
		l += sep + s.Delivery
	}
	return l
}

func writeDot(w io.Writer, p *plan.Plan) {
	fmt.Fprintf(w, "digraph %q {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n", p.Pipeline)
	for _, s := range p.Stages {
		shape := "box"
		switch s.Kind {
		case stdlib.SourceKind:
			shape = "invhouse"
		case stdlib.SinkKind:
			shape = "house"
		}
		fmt.Fprintf(w, "  %q [label=%q, shape=%s];\n", s.Name, stageLabel(s, "\n"), shape)
	}
	for _, ed := range p.Edges {
		var attrs []string
		if ed.Port != "" {
			attrs = append(attrs, fmt.Sprintf("label=%q", ed.Port))
		}
		if ed.DeadLetter {
			attrs = append(attrs, `style=dashed`, `color=red`, `label="dead letter"`)
		}
		a := ""
		if len(attrs) > 0 {
			a = " [" + strings.Join(attrs, ", ") + "]"
		}
		fmt.Fprintf(w, "  %q -> %q%s;\n", ed.From, ed.To, a)
	}
	fmt.Fprintln(w, "}")
}

func mermaidID(name string) string { return "s_" + name }

func writeMermaid(w io.Writer, p *plan.Plan) {
	fmt.Fprintln(w, "flowchart LR")
	for _, s := range p.Stages {
		open, close := "[", "]"
		switch s.Kind {
		case stdlib.SourceKind:
			open, close = "[/", "/]"
		case stdlib.SinkKind:
			open, close = "[\\", "\\]"
		}
		label := strings.ReplaceAll(stageLabel(s, "<br/>"), `"`, "#quot;")
		fmt.Fprintf(w, "  %s%s\"%s\"%s\n", mermaidID(s.Name), open, label, close)
	}
	for _, ed := range p.Edges {
		switch {
		case ed.DeadLetter:
			fmt.Fprintf(w, "  %s -. dead letter .-> %s\n", mermaidID(ed.From), mermaidID(ed.To))
		case ed.Port != "":
			fmt.Fprintf(w, "  %s -- %s --> %s\n", mermaidID(ed.From), ed.Port, mermaidID(ed.To))
		default:
			fmt.Fprintf(w, "  %s --> %s\n", mermaidID(ed.From), mermaidID(ed.To))
		}
	}
}
