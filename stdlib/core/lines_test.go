package core

import (
	"os"
	"strings"
	"testing"

	"pipe.dev/pipe/stdlib"
)

// TestStdinLines checks that stdin records carry their line number and the
// offset their line starts at, and that a decode error names both, also
// after a resume skipped lines.
func TestStdinLines(t *testing.T) {
	input := "{\"a\":1}\n\nnope\r\n{\"a\":3}"
	read := func(resume stdlib.Resumer) []stdlib.Record {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { w.WriteString(input); w.Close() }()
		src, err := newStdin(config(StdinSpec, "in", map[string]any{"format": stdlib.Ident("json")}), r)
		if err != nil {
			t.Fatal(err)
		}
		return drain(t, src, resume)
	}
	recs := read(nil)
	lines, starts := []int64{1, 3, 4}, []int64{0, 9, 15}
	if len(recs) != len(lines) {
		t.Fatalf("%d records, want %d", len(recs), len(lines))
	}
	for i, r := range recs {
		if r.Line != lines[i] || r.Start != starts[i] {
			t.Errorf("record %d at line %d byte %d, want line %d byte %d", i, r.Line, r.Start, lines[i], starts[i])
		}
	}
	if recs[1].Err == nil || !strings.Contains(recs[1].Err.Error(), "stdin:3 (byte 9): ") {
		t.Errorf("error %v, want one naming stdin:3 (byte 9)", recs[1].Err)
	}
	// A stream is never resumed: a stored position changes nothing.
	if again := read(stdlib.ResumeMap{"stdin": 15}); len(again) != len(recs) {
		t.Fatalf("with a stored position: %d records, want %d", len(again), len(recs))
	}
}
