package examples

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/exec/testrun"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/format"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/all"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

func compile(t *testing.T, path string) (*compiler.Program, lang.Diagnostics) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return compiler.Compile(&compiler.Config{Registry: stdlib.Default}, path, src)
}

func goodExamples(t *testing.T) []string {
	var files []string
	for _, pattern := range []string{"*.pipe", "bench/*.pipe", "lib/*.pipe"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 6 {
		t.Fatalf("found %d examples, want at least 6", len(files))
	}
	return files
}

// TestExamplesCompile compiles every example: no errors, and a plan builds.
func TestExamplesCompile(t *testing.T) {
	for _, f := range goodExamples(t) {
		t.Run(f, func(t *testing.T) {
			prog, diags := compile(t, f)
			if diags.HasErrors() {
				t.Fatalf("unexpected errors:\n%s", diags.Errors())
			}
			if _, err := plan.Build(prog); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestExamplesFormatted checks that every example is in the canonical form
// `pipe fmt` prints, and that formatting is idempotent on it.
func TestExamplesFormatted(t *testing.T) {
	for _, f := range goodExamples(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, diags := format.Source(f, src)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags)
		}
		if string(out) != string(src) {
			t.Errorf("%s is not formatted: run pipe fmt -w %s", f, f)
		}
	}
}

// TestBadExamples checks that each example in bad/ gives exactly the
// diagnostics (code and line:col) its .want file lists.
func TestBadExamples(t *testing.T) {
	files, _ := filepath.Glob("bad/*.pipe")
	if len(files) < 3 {
		t.Fatalf("found %d bad examples, want at least 3", len(files))
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".pipe") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			_, diags := compile(t, f)
			diags = diags.Errors()
			diags.Sort()
			var got []string
			for _, d := range diags {
				got = append(got, fmt.Sprintf("%s %d:%d", d.Code, d.Span.Start.Line, d.Span.Start.Column))
			}
			if g, w := strings.Join(got, "\n"), strings.TrimSpace(string(want)); g != w {
				t.Errorf("diagnostics differ\n got:\n%s\nwant:\n%s\nfull:\n%s", g, w, diags)
			}
		})
	}
}

// TestExampleInlineTests runs the inline tests of every example, as
// `pipe test examples` does.
func TestExampleInlineTests(t *testing.T) {
	total := 0
	for _, f := range goodExamples(t) {
		prog, diags := compile(t, f)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", f, diags.Errors())
		}
		p, err := plan.Build(prog)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range testrun.Run(t.Context(), p, nil) {
			total++
			t.Run(f+"/"+r.Test, func(t *testing.T) {
				if r.Err != nil {
					t.Fatalf("%s: %v", r.Span, r.Err)
				}
				for _, fl := range r.Failures {
					t.Errorf("%s: %s\n%s", fl.Span, fl.Message, fl.Diff)
				}
			})
		}
	}
	if total < 5 {
		t.Errorf("examples hold %d inline tests, want at least 5", total)
	}
}

// TestBrokenExpectationFails checks that a wrong expected value fails the
// test with its position and a diff.
func TestBrokenExpectationFails(t *testing.T) {
	src, err := os.ReadFile("quickstart.pipe")
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), `{ id: 1, customer: "u1", region: "EU" }`, `{ id: 1, customer: "u1", region: "ROW" }`, 1)
	if broken == string(src) {
		t.Fatal("quickstart.pipe no longer holds the expectation this test breaks")
	}
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "quickstart.pipe", []byte(broken))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, r := range testrun.Run(t.Context(), p, nil) {
		if r.Passed() {
			continue
		}
		failed++
		if len(r.Failures) != 1 {
			t.Fatalf("%s: want one failure, got %d (err %v)", r.Test, len(r.Failures), r.Err)
		}
		f := r.Failures[0]
		if f.Span.Start.Line == 0 || !strings.Contains(f.Message, `"region"`) {
			t.Errorf("failure %s: %q does not name the field", f.Span, f.Message)
		}
		if !strings.Contains(f.Diff, `-{"customer":"u1","id":1,"region":"ROW"}`) || !strings.Contains(f.Diff, `+{"customer":"u1","id":1,"region":"EU"}`) {
			t.Errorf("diff does not show expected and actual:\n%s", f.Diff)
		}
	}
	if failed != 1 {
		t.Errorf("%d tests failed, want 1", failed)
	}
}

// TestQuickstartRuns runs the quickstart end to end in a scratch directory:
// it ends by itself, every big purchase is written once to the file of its
// region, and a second run resumes after the last checkpoint and adds
// nothing. Deleting .pipe-state/quickstart and out/, as the README says,
// starts over: a third run writes the first run's output again.
func TestQuickstartRuns(t *testing.T) {
	src, err := filepath.Abs("quickstart.pipe")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	prog, diags := compile(t, src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		err := exec.Run(ctx, p, &exec.Config{})
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		eu := readJSONL(t, filepath.Join(dir, "out/quickstart-eu.jsonl"))
		rest := readJSONL(t, filepath.Join(dir, "out/quickstart-rest.jsonl"))
		seen := map[float64]bool{}
		for _, r := range append(eu, rest...) {
			id, _ := r["id"].(float64)
			if seen[id] {
				t.Fatalf("run %d: id %v written twice", run, id)
			}
			seen[id] = true
			if amount, _ := r["amount"].(float64); amount <= 50 {
				t.Errorf("run %d: record %v passed the filter", run, r)
			}
			if _, ok := r["user"]; ok {
				t.Errorf("run %d: user was not renamed: %v", run, r)
			}
		}
		for _, r := range eu {
			if r["region"] != "EU" {
				t.Errorf("run %d: %v in the EU file", run, r)
			}
		}
		for _, r := range rest {
			if r["region"] != "ROW" {
				t.Errorf("run %d: %v in the rest file", run, r)
			}
		}
		// 1000 generated amounts uniform in [1, 100): about half pass.
		if n := len(seen); n < 400 || n > 600 {
			t.Errorf("run %d: %d records written, want about 500", run, n)
		}
	}
	first, err := os.ReadFile(filepath.Join(dir, "out/quickstart-eu.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{".pipe-state/quickstart", "out"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := exec.Run(ctx, p, &exec.Config{}); err != nil {
		t.Fatalf("run after starting over: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "out/quickstart-eu.jsonl")); string(again) != string(first) {
		t.Fatalf("after starting over the EU file has %d bytes, want the %d of the first run", len(again), len(first))
	}
}

func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

// TestQuickstartKafkaRuns runs the Kafka quickstart on an in-process
// development broker until everything generated has come back through the
// topic, then stops it as a signal would: the file holds every purchase
// over 50 exactly once.
func TestQuickstartKafkaRuns(t *testing.T) {
	src, err := filepath.Abs("quickstart_kafka.pipe")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	b, err := devbroker.Start(t.Context(), devbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Setenv("KAFKA_BROKERS", b.Addr())
	prog, diags := compile(t, src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var want int64
	status := func(s exec.Snapshot) {
		counts := map[string]exec.StageStatus{}
		for _, st := range s.Stages {
			counts[st.Name] = st
		}
		if counts["from_kafka"].In == 2000 && counts["big_purchases"].Out == counts["big"].Out && s.Checkpoint > 0 {
			want = counts["big"].Out
			cancel() // as SIGINT does: drain, final checkpoint
		}
	}
	if err := exec.Run(ctx, p, &exec.Config{Status: status, StatusInterval: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if want == 0 {
		t.Fatal("the run ended before every generated record came back through Kafka")
	}
	got := readJSONL(t, filepath.Join(dir, "out/quickstart-kafka.jsonl"))
	seen := map[float64]bool{}
	for _, r := range got {
		id, _ := r["id"].(float64)
		if seen[id] {
			t.Fatalf("id %v written twice", id)
		}
		seen[id] = true
		if amount, _ := r["amount"].(float64); amount <= 50 || r["customer"] == nil {
			t.Errorf("record %v should not be in the output", r)
		}
	}
	if int64(len(got)) != want {
		t.Errorf("%d records in the file, the filter passed %d", len(got), want)
	}
}

// TestReadmePipeline compiles the pipeline the README shows, lint-clean,
// and runs its inline test.
func TestReadmePipeline(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "## A pipeline")
	start := strings.Index(s[max(i, 0):], "```hcl\n")
	if i < 0 || start < 0 {
		t.Fatal("README.md has no pipeline under \"## A pipeline\"")
	}
	body := s[i+start+len("```hcl\n"):]
	body = body[:strings.Index(body, "```")]
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "README.md", []byte(body))
	if len(diags) > 0 {
		t.Fatalf("README pipeline:\n%s", diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	results := testrun.Run(t.Context(), p, nil)
	if len(results) == 0 {
		t.Fatal("the README pipeline has no inline test")
	}
	for _, r := range results {
		if !r.Passed() {
			t.Errorf("README test %q: %v %v", r.Test, r.Err, r.Failures)
		}
	}
}
