package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	os.WriteFile(in, []byte("hello\n"), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-i", in, "-o", out, "--", "cat"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.WallS <= 0 || res.MaxRSSKB <= 0 || res.Command[0] != "cat" {
		t.Errorf("result %+v", res)
	}
	if b, _ := os.ReadFile(out); string(b) != "hello\n" {
		t.Errorf("output %q", b)
	}
	stdout.Reset()
	if code := run([]string{"--", "false"}, &stdout, &stderr); code != 1 {
		t.Errorf("failing command: exit %d", code)
	}
}
