package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/stdlib"
)

func cmdConnectors(e *env, args []string) int {
	fs := newFlags(e, "connectors", "[NAME]", `List every registered source, transform and sink; with NAME, show its attributes,
their types, defaults and the delivery guarantees it can honour.`)
	format := fs.String("format", "text", "output format: text or json")
	if code, ok := parseFlags(fs, args, anyArgs); !ok {
		return code
	}
	// The registry's components and the compiler's own transforms.
	specs := append(stdlib.Default.Specs(""), compiler.BuiltinTransforms()...)
	slices.SortStableFunc(specs, func(a, b *stdlib.Spec) int {
		return cmp.Or(cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)), strings.Compare(a.Name, b.Name))
	})
	if fs.NArg() > 0 {
		name := fs.Arg(0)
		var found []*stdlib.Spec
		for _, s := range specs {
			if s.Name == name {
				found = append(found, s)
			}
		}
		if len(found) == 0 {
			var names []string
			for _, s := range specs {
				names = append(names, s.Name)
			}
			names = dedupe(names)
			if d := compiler.Suggest(name, names); d != "" {
				return e.fail(exitFindings, "no component %q; %s", name, d)
			}
			return e.fail(exitFindings, "no component %q (have %s)", name, strings.Join(names, ", "))
		}
		specs = found
	}
	if *format == "json" {
		return writeSpecsJSON(e.stdout, specs)
	}
	if fs.NArg() == 0 {
		for _, s := range specs {
			fmt.Fprintf(e.stdout, "%-10s %-12s %s\n", s.Kind, s.Name, s.Summary)
		}
		return exitOK
	}
	for i, s := range specs {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		writeSpecText(e.stdout, s)
	}
	return exitOK
}

// kindOrder orders components: sources, transforms, sinks.
func kindOrder(k stdlib.Kind) int {
	return slices.Index([]stdlib.Kind{stdlib.SourceKind, stdlib.TransformKind, stdlib.SinkKind}, k)
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func writeSpecText(w io.Writer, s *stdlib.Spec) {
	fmt.Fprintf(w, "%s %s: %s\n", s.Kind, s.Name, s.Summary)
	if len(s.Delivery) > 0 {
		var d []string
		for _, x := range s.Delivery {
			d = append(d, string(x))
		}
		fmt.Fprintf(w, "  delivery: %s\n", strings.Join(d, ", "))
	}
	if s.Kind == stdlib.SourceKind {
		if s.Bounded {
			fmt.Fprintln(w, "  bounded: ends when its input is exhausted")
		} else {
			fmt.Fprintln(w, "  unbounded: runs until stopped")
		}
	}
	if s.Schema {
		fmt.Fprintln(w, "  takes schema = Name")
	}
	if len(s.Meta) > 0 {
		fmt.Fprintln(w, "  sets metadata:")
		for _, m := range s.Meta {
			fmt.Fprintf(w, "    meta.%s %s\n        %s\n", m.Name, m.Type, m.Doc)
		}
	}
	fmt.Fprintln(w, "  attributes:")
	writeParams(w, s.Params, "    ")
}

func writeParams(w io.Writer, params []stdlib.Param, indent string) {
	for _, p := range params {
		var flags []string
		if p.Required {
			flags = append(flags, "required")
		}
		if p.Default != nil {
			flags = append(flags, "default "+formatDefault(p.Default))
		}
		if p.Secret {
			flags = append(flags, "secret")
		}
		op := "="
		if p.Expr {
			op = ":="
		}
		extra := ""
		if len(flags) > 0 {
			extra = " (" + strings.Join(flags, ", ") + ")"
		}
		fmt.Fprintf(w, "%s%s %s %s%s\n", indent, p.Name, op, p.Type, extra)
		if p.Doc != "" {
			fmt.Fprintf(w, "%s    %s\n", indent, p.Doc)
		}
		if p.Type.Kind == stdlib.BlockParam {
			writeParams(w, p.Type.Block, indent+"    ")
		}
	}
}

func formatDefault(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case time.Duration:
		return v.String()
	case stdlib.Ident:
		return string(v)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = formatDefault(x)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

type jsonParam struct {
	Name     string      `json:"name"`
	Type     string      `json:"type"`
	Required bool        `json:"required,omitempty"`
	Default  string      `json:"default,omitempty"`
	Doc      string      `json:"doc,omitempty"`
	Secret   bool        `json:"secret,omitempty"`
	Expr     bool        `json:"expr,omitempty"`
	Block    []jsonParam `json:"block,omitempty"`
}

type jsonSpec struct {
	Kind     string      `json:"kind"`
	Name     string      `json:"name"`
	Summary  string      `json:"summary"`
	Delivery []string    `json:"delivery,omitempty"`
	Bounded  bool        `json:"bounded,omitempty"`
	Schema   bool        `json:"schema,omitempty"`
	Meta     []jsonMeta  `json:"meta,omitempty"`
	Params   []jsonParam `json:"params"`
}

type jsonMeta struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Doc  string `json:"doc,omitempty"`
}

func toJSONParams(ps []stdlib.Param) []jsonParam {
	out := []jsonParam{}
	for _, p := range ps {
		jp := jsonParam{Name: p.Name, Type: p.Type.String(), Required: p.Required, Doc: p.Doc, Secret: p.Secret, Expr: p.Expr}
		if p.Default != nil {
			jp.Default = formatDefault(p.Default)
		}
		if p.Type.Kind == stdlib.BlockParam {
			jp.Block = toJSONParams(p.Type.Block)
		}
		out = append(out, jp)
	}
	return out
}

func writeSpecsJSON(w io.Writer, specs []*stdlib.Spec) int {
	out := struct {
		Version    int        `json:"version"`
		Components []jsonSpec `json:"components"`
	}{Version: 1}
	for _, s := range specs {
		js := jsonSpec{Kind: string(s.Kind), Name: s.Name, Summary: s.Summary, Bounded: s.Bounded, Schema: s.Schema, Params: toJSONParams(s.Params)}
		for _, d := range s.Delivery {
			js.Delivery = append(js.Delivery, string(d))
		}
		for _, m := range s.Meta {
			js.Meta = append(js.Meta, jsonMeta{Name: m.Name, Type: m.Type.String(), Doc: m.Doc})
		}
		out.Components = append(out.Components, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return exitUsage
	}
	return exitOK
}
