package plan

import (
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/ir"
	"pipe.dev/pipe/stdlib"
)

func TestUnmarshalRejectsOtherVersions(t *testing.T) {
	for _, in := range []string{`{"version": 2, "stages": []}`, `{"stages": []}`, `not json`} {
		if _, err := Unmarshal([]byte(in)); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
	p, err := Unmarshal([]byte(`{"version": 1, "pipeline": "x", "stages": [], "edges": []}`))
	if err != nil || p.Pipeline != "x" {
		t.Fatalf("got %+v, %v", p, err)
	}
}

func TestBuildValues(t *testing.T) {
	prog := &ir.Program{
		Pipeline:   "p",
		Checkpoint: 5 * time.Second,
		Stages: []*ir.Stage{{
			Name: "s", Kind: stdlib.SourceKind, Component: "gen", Tasks: 1,
			Attrs: []*ir.Attr{
				{Name: "d", Value: 250 * time.Millisecond},
				{Name: "z", Value: ir.Size(1024)},
				{Name: "k", Value: ir.Secret("${env:K}")},
				{Name: "m", Value: ir.Map{{Key: "b", Value: int64(1)}, {Key: "a", Value: true}}},
				{Name: "c", Value: &ir.Call{Name: "retry", Args: ir.Map{{Key: "max", Value: int64(3)}}}},
			},
		}},
	}
	p, err := Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	a := p.Stages[0].Attrs
	if a["d"].Kind != DurationValue || a["d"].Int != int64(250*time.Millisecond) {
		t.Errorf("duration: %+v", a["d"])
	}
	if a["z"].Kind != SizeValue || a["z"].Int != 1024 {
		t.Errorf("size: %+v", a["z"])
	}
	if a["k"].Kind != SecretValue || a["k"].Str != "${env:K}" {
		t.Errorf("secret: %+v", a["k"])
	}
	if a["m"].Kind != MapValue || a["m"].Map[0].Key != "b" {
		t.Errorf("map order not kept: %+v", a["m"])
	}
	if a["c"].Call.Name != "retry" || a["c"].Call.Args[0].Value.Int != 3 {
		t.Errorf("call: %+v", a["c"].Call)
	}
	b, err := Marshal(p)
	if err != nil || !strings.HasSuffix(string(b), "}\n") {
		t.Fatalf("marshal: %v %q", err, b)
	}
	if _, err := Build(&ir.Program{Stages: []*ir.Stage{{Name: "x", Attrs: []*ir.Attr{{Name: "bad", Value: struct{}{}}}}}}); err == nil {
		t.Error("unsupported value accepted")
	}
}
