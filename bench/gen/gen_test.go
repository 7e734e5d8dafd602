package gen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	var a, b bytes.Buffer
	if err := Write(&a, 1000, 5); err != nil {
		t.Fatal(err)
	}
	Write(&b, 1000, 5)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same seed, different output")
	}
	lines := strings.Split(strings.TrimSuffix(a.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines", len(lines))
	}
	kept := 0
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if m["id"] != float64(i+1) || len(m) != 6 {
			t.Fatalf("line %d: %v", i+1, m)
		}
		if amount := m["amount"].(float64); amount < 1 || amount >= 100 {
			t.Fatalf("line %d: amount %v", i+1, amount)
		}
		if Transform(m) {
			kept++
			if m["customer"] == nil || m["user"] != nil || m["region"] != "EU" {
				t.Fatalf("transform: %v", m)
			}
		}
	}
	// Amounts are uniform in [1, 100): about half pass amount > 50.
	if kept < 400 || kept > 600 {
		t.Errorf("%d of 1000 records kept", kept)
	}
	first := `{"id":1,"user":"u166","amount":36.68,"country":"BE","event":"view","ts":"2024-01-01T00:00:01Z"}`
	var c bytes.Buffer
	Write(&c, 1, 1)
	if strings.TrimSpace(c.String()) != first {
		t.Errorf("seed 1 record 1 changed: %s", c.String())
	}
}

func TestCanonical(t *testing.T) {
	a, err := Canonical([]byte(`{"b":1,"a":2.50}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Canonical([]byte(`{"a":2.5, "b":1.0}`))
	if a != b || a != `{"a":2.5,"b":1}` {
		t.Errorf("%s vs %s", a, b)
	}
	if _, err := Canonical([]byte(`{`)); err == nil {
		t.Error("bad line accepted")
	}
}

func TestWriteShaped(t *testing.T) {
	for _, shape := range Shapes {
		var a bytes.Buffer
		if err := WriteShaped(&a, shape, 200, 3); err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(strings.TrimSuffix(a.String(), "\n"), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%s line %d: %v", shape, i+1, err)
			}
			if m["id"] != float64(i+1) || m["user"] == nil || m["amount"] == nil {
				t.Fatalf("%s line %d: %v", shape, i+1, m)
			}
			switch shape {
			case Narrow:
				if len(m) != 6 {
					t.Fatalf("narrow line %d: %d fields", i+1, len(m))
				}
			case Wide:
				if len(m) != 30 {
					t.Fatalf("wide line %d: %d fields", i+1, len(m))
				}
			case Nested:
				if len(l) < 2000 || len(l) > 2100 {
					t.Fatalf("nested line %d: %d bytes", i+1, len(l))
				}
			}
		}
	}
	if err := WriteShaped(&bytes.Buffer{}, "round", 1, 1); err == nil {
		t.Fatal("unknown shape accepted")
	}
}
