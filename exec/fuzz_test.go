package exec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/core"
)

// Fuzz parameters, taken modulo their count.
var (
	fuzzFormats  = []string{"json", "csv", "lines"}
	fuzzPolicies = []string{"skip", "dead_letter(rejects)", "fail"}
)

// Flags of FuzzRecords.
const (
	fuzzKeepUTF8  = 1 << iota // invalid_utf8 = keep
	fuzzCSVHeader             // csv: header = true (else false)
)

// FuzzRecords runs a file source over mutated input in every format under
// every error policy and checks that nothing panics and every record read
// is accounted for by the stage counters: emitted + skipped + dead-lettered
// = read = the input's non-blank lines (less a csv header row). Under
// policy fail the run may stop, only on malformed input. Run it with
//
//	go test ./exec -run '^$' -fuzz '^FuzzRecords$' -fuzztime 30s
func FuzzRecords(f *testing.F) {
	seeds := []struct {
		data   string
		format int
		flags  uint8
	}{
		{`{"id":1,"name":"Ada","score":1.5,"ok":true}` + "\n" + `{"id":2,"name":"Alan","ok":false,"x":[1,{"y":null}]}` + "\r\n", 0, 0},
		{"{\"id\":1,\"name\":\"\\u00e9\\ud83d\\ude00\",\"ok\":true}\n\n{bad\n{\"id\":\"2\"}\n{\"id\":3,\"name\":\"\xff\",\"ok\":true}", 0, 0},
		{"{\"id\":3,\"name\":\"\xff\\ud800\",\"ok\":true}\n", 0, fuzzKeepUTF8},
		{"1,Ada,1.5,true\n2,\"Alan, T\",,false\n\n3,\"x\"\"y\",2e3,true", 1, 0},
		{"ok,name,id,score\ntrue,Ada,1,\n2,x\n", 1, fuzzCSVHeader},
		{"id,nme,ok\n1,Ada,true\n", 1, fuzzCSVHeader},
		{"1,\xff,,true\n\"open,1,2,true\n", 1, fuzzKeepUTF8},
		{"hello\nwörld\r\n\n\xff\xfe\n   \nlast", 2, 0},
		{"a\xc3\n", 2, fuzzKeepUTF8},
	}
	for _, s := range seeds {
		for policy := range fuzzPolicies {
			f.Add([]byte(s.data), uint8(s.format), uint8(policy), s.flags)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, format, policy, flags uint8) {
		checkRecords(t, data, fuzzFormats[int(format)%len(fuzzFormats)], fuzzPolicies[int(policy)%len(fuzzPolicies)], flags)
	})
}

// checkRecords runs data through a pipeline file source -> discard and
// checks its counters.
func checkRecords(t *testing.T, data []byte, format, policy string, flags uint8) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	header := format == "csv" && flags&fuzzCSVHeader != 0
	var src strings.Builder
	src.WriteString("pipeline fuzz {\n  delivery = at_least_once\n}\n")
	src.WriteString("schema R {\n  id: int\n  name: string\n  score: float?\n  ok: bool\n}\n")
	fmt.Fprintf(&src, "source in: file {\n  path = %s\n  format = %s\n  on_error = %s\n", strconv.Quote(in), format, policy)
	if format != "lines" {
		src.WriteString("  schema = R\n")
	}
	if format == "csv" {
		fmt.Fprintf(&src, "  header = %t\n", header)
	}
	if flags&fuzzKeepUTF8 != 0 {
		src.WriteString("  invalid_utf8 = keep\n")
	}
	src.WriteString("}\nsink out: discard {}\n")
	dead := strings.HasPrefix(policy, "dead_letter")
	if dead {
		src.WriteString("sink rejects: discard {}\n")
	}
	src.WriteString("in -> out\n")

	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "fuzz.pipe", []byte(src.String()))
	if diags.HasErrors() {
		t.Fatalf("compile:\n%s\n%s", src.String(), diags.Errors())
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	var last exec.Snapshot
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = exec.Run(ctx, p, &exec.Config{StateDir: filepath.Join(dir, "state"), Status: func(s exec.Snapshot) { last = s }})
	if err != nil {
		var se *exec.StageError
		switch {
		case strings.Contains(err.Error(), "panic"):
			t.Fatalf("run panicked: %v", err)
		case !errors.As(err, &se) && !strings.Contains(err.Error(), "csv header"):
			t.Fatalf("run failed not on a record: %v", err)
		case header && strings.Contains(err.Error(), "csv header"):
			return // a header row not matching the schema stops any run
		case policy != "fail":
			t.Fatalf("a record error stopped a run with on_error = %s: %v", policy, err)
		case !strings.Contains(err.Error(), "malformed input"):
			t.Fatalf("the run failed, not on malformed input: %v", err)
		}
		return // fail stopped the run at a record: the batch read is not all counted
	}
	counts := map[string]exec.StageStatus{}
	for _, s := range last.Stages {
		counts[s.Name] = s
	}
	source, emitted, rejected := counts["in"], counts["out"].In, counts["rejects"].In
	if emitted != source.Out {
		t.Errorf("the sink received %d records, the source emitted %d", emitted, source.Out)
	}
	skipped := int64(0)
	switch {
	case dead && rejected != source.Errors:
		t.Errorf("%d records dead-lettered, %d failed", rejected, source.Errors)
	case policy == "skip":
		skipped = source.Errors
	case policy == "fail" && source.Errors != 0:
		t.Errorf("%d records failed under policy fail", source.Errors)
	}
	if emitted+skipped+rejected != source.In {
		t.Errorf("emitted %d + skipped %d + dead-lettered %d != read %d", emitted, skipped, rejected, source.In)
	}
	want := nonBlankLines(data)
	if header && want > 0 {
		want-- // the header row
	}
	if source.In != want {
		t.Errorf("read %d records from %d non-blank lines (header %v)", source.In, want, header)
	}
}

// nonBlankLines counts the lines of data that carry a record, as the file
// source splits them.
func nonBlankLines(data []byte) int64 {
	n := int64(0)
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
	}
	return n
}
