package stdlib

import (
	"strings"
	"testing"
	"time"
)

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		t    ParamType
		want any
	}{
		{"1MiB", Size, int64(1 << 20)},
		{" 1.5KB ", Size, int64(1500)},
		{"512B", Size, int64(512)},
		{"1d", Duration, 24 * time.Hour},
		{"1m30s", Duration, 90 * time.Second},
		{"0s", Duration, time.Duration(0)},
		{"-3", Int, int64(-3)},
		{"2.5", Float, 2.5},
		{"true", Bool, true},
		{"csv", Enum("json", "csv"), Ident("csv")},
		{"auto", ParamType{Kind: BoolParam, OrEnum: []string{"auto"}}, Ident("auto")},
		{"2024-01-01T00:00:00Z", Time, "2024-01-01T00:00:00Z"},
		{" kept ", String, " kept "},
	} {
		got, err := ParseValue(c.in, c.t)
		if err != nil || got != c.want {
			t.Errorf("ParseValue(%q, %s) = %v, %v; want %v", c.in, c.t, got, err, c.want)
		}
	}
	for _, c := range []struct {
		in string
		t  ParamType
	}{
		{"1 MiB", Size}, {"1.5", Size}, {"-1", Size}, {"512", Size}, {"1XB", Size}, {"99999999TiB", Size},
		{"1.5h", Duration}, {"10", Duration}, {"5x", Duration}, {"-1s", Duration}, {"999999999999d", Duration},
		{"1e", Int}, {"Inf", Float}, {"1", Bool}, {"xml", Enum("json", "csv")}, {"yesterday", Time},
		{"xyz", ListOf(String)},
	} {
		if got, err := ParseValue(c.in, c.t); err == nil || strings.Contains(err.Error(), c.in) {
			t.Errorf("ParseValue(%q, %s) = %v, %v; want an error without the value", c.in, c.t, got, err)
		}
	}
}

func TestValues(t *testing.T) {
	spec := &Spec{Params: []Param{
		{Name: "n", Type: Int, Default: int64(3)},
		{Name: "f", Type: Float},
		{Name: "wait", Type: Duration, Default: 5 * time.Minute},
		{Name: "mode", Type: Enum("a", "b"), Default: "a"},
		{Name: "hosts", Type: ListOf(Size)},
		{Name: "tls", Type: Block(Param{Name: "verify", Type: Bool, Default: true}, Param{Name: "ca", Type: String})},
	}}
	attrs := map[string]any{"f": int64(2), "wait": time.Duration(0), "hosts": []any{"1KiB", int64(7)},
		"tls": map[string]any{"ca": "x"}, "other": "kept"}
	got, err := spec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	tls, _ := got["tls"].(map[string]any)
	if got["n"] != int64(3) || got["f"] != 2.0 || got["wait"] != time.Duration(0) || got["mode"] != Ident("a") ||
		got["hosts"].([]any)[0] != int64(1024) || tls["verify"] != true || tls["ca"] != "x" || got["other"] != "kept" {
		t.Fatalf("Values = %v", got)
	}
	if _, ok := attrs["n"]; ok {
		t.Error("Values changed its argument")
	}
	for _, c := range []struct {
		attrs map[string]any
		want  string
	}{
		{map[string]any{"n": "x"}, `attribute "n": not an int`},
		{map[string]any{"n": 1.5}, `attribute "n": is float64, want int`},
		{map[string]any{"mode": Ident("c")}, `attribute "mode": not one of a, b`},
		{map[string]any{"hosts": []any{"1B", "x"}}, `attribute "hosts": item 2: not a size`},
		{map[string]any{"tls": map[string]any{"verify": "yes"}}, `attribute "tls.verify": not true or false`},
	} {
		if _, err := spec.Values(c.attrs); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Values(%v) = %v, want %q", c.attrs, err, c.want)
		}
	}
}

func TestRegisterChecksDefaults(t *testing.T) {
	r := NewRegistry()
	bad := &Spec{Kind: SourceKind, Name: "bad", Params: []Param{{Name: "wait", Type: Duration, Default: 5}}}
	if err := r.Register(bad); err == nil || !strings.Contains(err.Error(), `default of "wait"`) {
		t.Errorf("Register = %v, want an error about the default", err)
	}
}
