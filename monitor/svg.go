package monitor

import (
	"fmt"
	"html"
	"io"

	"pipe.dev/pipe/compiler/plan"
)

// Layout of the stage graph, in SVG user units.
const (
	nodeW, nodeH = 230, 70
	colGap       = 80
	rowGap       = 30
	margin       = 20
)

type svgNode struct {
	s    *plan.Stage
	col  int
	row  int
	x, y int
}

// DrawSVG draws p's stage graph as a standalone SVG document: stages in
// columns by their distance from a source, edges as curves (route ports
// labelled, dead-letter edges dashed). Each stage's group has the id
// "stage-NAME" and an empty text "stat-NAME" that the status page fills
// with live counts.
func DrawSVG(w io.Writer, p *plan.Plan) {
	nodes := map[string]*svgNode{}
	var order []*svgNode
	for _, s := range p.Stages {
		n := &svgNode{s: s}
		nodes[s.Name] = n
		order = append(order, n)
	}
	// Stages come in topological order: a stage's column is one more than
	// its furthest upstream stage's.
	for _, n := range order {
		for _, e := range p.Edges {
			if from := nodes[e.From]; e.To == n.s.Name && from != nil {
				n.col = max(n.col, from.col+1)
			}
		}
	}
	rows := map[int]int{}
	cols, maxRows := 0, 0
	for _, n := range order {
		n.row = rows[n.col]
		rows[n.col]++
		cols = max(cols, n.col+1)
		maxRows = max(maxRows, rows[n.col])
	}
	width := 2*margin + cols*nodeW + max(cols-1, 0)*colGap
	height := 2*margin + maxRows*nodeH + max(maxRows-1, 0)*rowGap
	// Centre each column vertically.
	for _, n := range order {
		off := (maxRows - rows[n.col]) * (nodeH + rowGap) / 2
		n.x = margin + n.col*(nodeW+colGap)
		n.y = margin + off + n.row*(nodeH+rowGap)
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" class="pipe-graph" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">`+"\n", width, height, width, height)
	io.WriteString(w, `<title>`+html.EscapeString(p.Pipeline)+`</title>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>
<marker id="arrow-dl" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker></defs>
<style>.stage rect{stroke:#555;stroke-width:1.5}.stage.source rect{fill:#e3f0fb}.stage.transform rect{fill:#f4f4f4}.stage.sink rect{fill:#e6f5e9}.stage.failing rect{stroke:#c0392b;stroke-width:3}.stage .name{font-weight:bold;font-size:14px}.stage .what{font-size:11px;fill:#444}.stage .stat{font-size:11px;fill:#1a5276}.edge{fill:none;stroke:#555;stroke-width:1.5}.edge.dead-letter{stroke:#c0392b;stroke-dasharray:5 4}.port{font-size:11px;fill:#555}</style>
`)
	for _, e := range p.Edges {
		from, to := nodes[e.From], nodes[e.To]
		if from == nil || to == nil {
			continue
		}
		x1, y1 := from.x+nodeW, from.y+nodeH/2
		x2, y2 := to.x, to.y+nodeH/2
		class, marker := "edge", "arrow"
		if e.DeadLetter {
			class, marker = "edge dead-letter", "arrow-dl"
		}
		mid := (x1 + x2) / 2
		fmt.Fprintf(w, `<path class="%s" data-from="%s" data-to="%s" d="M%d,%d C%d,%d %d,%d %d,%d" marker-end="url(#%s)"/>`+"\n",
			class, attr(e.From), attr(e.To), x1, y1, mid, y1, mid, y2, x2, y2, marker)
		label := e.Port
		if e.DeadLetter {
			label = "dead letter"
		}
		if label != "" {
			// Beside the arrowhead: labels of one port's edges stay apart.
			fmt.Fprintf(w, `<text class="port" x="%d" y="%d" text-anchor="end">%s</text>`+"\n", x2-10, y2-6, html.EscapeString(label))
		}
	}
	for _, n := range order {
		s := n.s
		what := string(s.Kind) + ": " + s.Component
		if s.Tasks > 1 {
			what += fmt.Sprintf(" ×%d", s.Tasks)
		}
		if s.Delivery != "" {
			what += " · " + s.Delivery
		}
		fmt.Fprintf(w, `<g class="stage %s" id="stage-%s" transform="translate(%d,%d)">`, attr(string(s.Kind)), attr(s.Name), n.x, n.y)
		fmt.Fprintf(w, `<rect width="%d" height="%d" rx="6"/>`, nodeW, nodeH)
		fmt.Fprintf(w, `<text class="name" x="10" y="20">%s</text>`, html.EscapeString(s.Name))
		fmt.Fprintf(w, `<text class="what" x="10" y="38">%s</text>`, html.EscapeString(what))
		fmt.Fprintf(w, `<text class="stat" id="stat-%s" x="10" y="58"></text>`, attr(s.Name))
		io.WriteString(w, "</g>\n")
	}
	io.WriteString(w, "</svg>\n")
}

func attr(s string) string { return html.EscapeString(s) }
