package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/stdlib"
)

// Build turns a checked program into a plan. Building the same program
// twice gives equal plans (and byte-identical JSON).
func Build(p *ir.Program) (pl *Plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			pl, err = nil, fmt.Errorf("plan: internal error: %v", r)
		}
	}()
	if p == nil {
		return nil, fmt.Errorf("plan: no program")
	}
	pl = &Plan{
		Version:    Version,
		Pipeline:   p.Pipeline,
		Checkpoint: int64(p.Checkpoint),
		Stages:     []*Stage{},
		Edges:      []*Edge{},
	}
	if p.Instances > 1 {
		pl.Instances = p.Instances
	}
	if h := p.HTTP; h != (ir.HTTP{}) {
		pl.HTTP = &HTTP{Addr: h.Addr, Token: h.Token, TLSCert: h.TLSCert, TLSKey: h.TLSKey}
	}
	for _, s := range p.Stages {
		ps, err := buildStage(s)
		if err != nil {
			return nil, err
		}
		pl.Stages = append(pl.Stages, ps)
	}
	for _, e := range p.Edges {
		pl.Edges = append(pl.Edges, &Edge{From: e.From, Port: e.Port, To: e.To, DeadLetter: e.DeadLetter})
	}
	for _, prm := range p.Params {
		v, err := value(prm.Value)
		if err != nil {
			return nil, fmt.Errorf("plan: param %q: %v", prm.Name, err)
		}
		pl.Params = append(pl.Params, &Param{Name: prm.Name, Type: prm.Type, Value: v, Span: prm.Span})
	}
	for _, t := range p.Tests {
		pt := &Test{Name: t.Name, Span: t.Span, Clock: t.Clock}
		for _, e := range t.Params {
			v, err := value(e.Value)
			if err != nil {
				return nil, fmt.Errorf("plan: test %q: %v", t.Name, err)
			}
			pt.Params = append(pt.Params, &MapEntry{Key: e.Key, Value: v})
		}
		for _, g := range t.Given {
			pg := &Given{Source: g.Source, Span: g.Span, Records: []*Value{}}
			for _, r := range g.Records {
				v, err := value(r)
				if err != nil {
					return nil, fmt.Errorf("plan: test %q: %v", t.Name, err)
				}
				pg.Records = append(pg.Records, v)
			}
			pt.Given = append(pt.Given, pg)
		}
		for _, e := range t.Expect {
			pe := &Expect{Target: e.Target, Span: e.Span, Empty: e.Empty}
			if e.Count != nil {
				n := *e.Count
				pe.Count = &n
			}
			for _, r := range e.Records {
				v, err := value(r)
				if err != nil {
					return nil, fmt.Errorf("plan: test %q: %v", t.Name, err)
				}
				pe.Records = append(pe.Records, v)
			}
			if e.Where != nil {
				pe.Where = expr(e.Where)
			}
			pt.Expect = append(pt.Expect, pe)
		}
		pl.Tests = append(pl.Tests, pt)
	}
	return pl, nil
}

func buildStage(s *ir.Stage) (*Stage, error) {
	ps := &Stage{
		Name:        s.Name,
		Kind:        s.Kind,
		Component:   s.Component,
		Span:        s.Span,
		Tasks:       s.Tasks,
		Keep:        s.Keep,
		Drop:        s.Drop,
		Schema:      s.Schema,
		Input:       s.Input,
		Output:      s.Output,
		Delivery:    string(s.Delivery),
		PartitionBy: s.PartitionBy,
	}
	if s.Component == "route" {
		ps.Ports = append(ps.Ports, s.Ports...)
		if s.Else != "" {
			ps.Ports = append(ps.Ports, s.Else)
		}
		ps.Else = s.Else
	}
	if len(s.Attrs) > 0 {
		ps.Attrs = map[string]*Value{}
		for _, a := range s.Attrs {
			v, err := value(a.Value)
			if err != nil {
				return nil, fmt.Errorf("plan: stage %q attribute %q: %v", s.Name, a.Name, err)
			}
			ps.Attrs[a.Name] = v
		}
	}
	for _, e := range s.Exprs {
		ps.Exprs = append(ps.Exprs, expr(e))
	}
	if s.OnError != nil {
		ps.OnError = policy(s.OnError)
	}
	return ps, nil
}

func expr(e *ir.Expr) *Expr {
	src := e.Exec
	if src == "" {
		src = e.Source
	}
	return &Expr{Kind: ExprKind(e.Kind), Target: e.Target, Source: src, Type: e.Type, Span: e.Span}
}

func policy(p *ir.ErrorPolicy) *ErrorPolicy {
	out := &ErrorPolicy{Action: p.Action, Target: p.Target, Max: p.Max, Backoff: int64(p.Backoff)}
	if p.Then != nil {
		out.Then = policy(p.Then)
	}
	return out
}

// value converts an IR attribute value (see ir.Attr) to a plan value.
func value(v any) (*Value, error) {
	switch v := v.(type) {
	case nil:
		return &Value{Kind: NullValue}, nil
	case string:
		return &Value{Kind: StringValue, Str: v}, nil
	case ir.Secret:
		return &Value{Kind: SecretValue, Str: string(v)}, nil
	case int64:
		return &Value{Kind: IntValue, Int: v}, nil
	case int:
		return &Value{Kind: IntValue, Int: int64(v)}, nil
	case float64:
		return &Value{Kind: FloatValue, Float: v}, nil
	case bool:
		return &Value{Kind: BoolValue, Bool: v}, nil
	case time.Duration:
		return &Value{Kind: DurationValue, Int: int64(v)}, nil
	case ir.Size:
		return &Value{Kind: SizeValue, Int: int64(v)}, nil
	case stdlib.Ident:
		return &Value{Kind: IdentValue, Str: string(v)}, nil
	case ir.SchemaRef:
		return &Value{Kind: SchemaValue, Str: string(v)}, nil
	case []any:
		out := &Value{Kind: ListValue, List: []*Value{}}
		for _, x := range v {
			xv, err := value(x)
			if err != nil {
				return nil, err
			}
			out.List = append(out.List, xv)
		}
		return out, nil
	case ir.Map:
		out := &Value{Kind: MapValue, Map: []*MapEntry{}}
		for _, e := range v {
			xv, err := value(e.Value)
			if err != nil {
				return nil, err
			}
			out.Map = append(out.Map, &MapEntry{Key: e.Key, Value: xv})
		}
		return out, nil
	case *ir.Call:
		cl := &Call{Name: v.Name}
		for _, e := range v.Args {
			xv, err := value(e.Value)
			if err != nil {
				return nil, err
			}
			cl.Args = append(cl.Args, &MapEntry{Key: e.Key, Value: xv})
		}
		return &Value{Kind: CallValue, Call: cl}, nil
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}

// Marshal encodes p as indented JSON with a trailing newline.
func Marshal(p *Plan) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("plan: %v", err)
	}
	return b.Bytes(), nil
}

// Unmarshal decodes a plan, rejecting other format versions.
func Unmarshal(data []byte) (*Plan, error) {
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("plan: %v", err)
	}
	if probe.Version == nil {
		return nil, fmt.Errorf("plan: no version field")
	}
	if *probe.Version != Version {
		return nil, fmt.Errorf("plan: version %d is not supported (want %d)", *probe.Version, Version)
	}
	var p Plan
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("plan: %v", err)
	}
	return &p, nil
}
