package examples

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/exec/testrun"
	"pipe.dev/pipe/internal/testkit"
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

// examplePlan compiles the example file (in the examples directory) into a
// plan.
func examplePlan(t *testing.T, file string) *plan.Plan {
	t.Helper()
	prog, diags := compile(t, file)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	return p
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

// TestExamplesLintClean checks that every example is clean under pipe lint
// --deny all: no error and no warning.
func TestExamplesLintClean(t *testing.T) {
	for _, f := range goodExamples(t) {
		t.Run(f, func(t *testing.T) {
			if _, diags := compile(t, f); len(diags) > 0 {
				t.Errorf("diagnostics:\n%s", diags)
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
	p := examplePlan(t, "quickstart.pipe")
	dir := t.TempDir()
	t.Chdir(dir)
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
		all := append(eu, rest...)
		checkFiltered(t, fmt.Sprintf("run %d", run), seen, all)
		for _, r := range all {
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

// checkFiltered fails t unless each of recs has an id that no record seen
// before had (adding it to seen) and an amount over 50, which the example
// pipelines' filters let through.
func checkFiltered(t *testing.T, what string, seen map[float64]bool, recs []map[string]any) {
	t.Helper()
	for _, r := range recs {
		id, _ := r["id"].(float64)
		if seen[id] {
			t.Fatalf("%s: id %v written twice", what, id)
		}
		seen[id] = true
		if amount, _ := r["amount"].(float64); amount <= 50 {
			t.Errorf("%s: record %v passed the filter", what, r)
		}
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
	p := examplePlan(t, "quickstart_kafka.pipe")
	dir := t.TempDir()
	t.Chdir(dir)
	b, err := devbroker.Start(t.Context(), devbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Setenv("KAFKA_BROKERS", b.Addr())
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

// TestKafkaToKafkaNewBroker runs examples/kafka_to_kafka.pipe against a
// broker, then against a new broker with the same topic names and new
// records, on the same state directory: the stored positions point into the
// first broker's topics, so the second run must write every record of the
// new broker exactly once (it wrote only those past the first run's offsets
// before positions carried the identity of their cluster and topic).
func TestKafkaToKafkaNewBroker(t *testing.T) {
	p := examplePlan(t, "kafka_to_kafka.pipe")
	t.Setenv("OUT_TOPIC", "out")
	newBrokerRounds(t, p, func(round int, brokers string, want map[int64]bool) {
		seen := map[int64]int{}
		for _, r := range readCommitted(t, brokers, "out", len(want)) {
			id, _ := r.Value.(map[string]any)["id"].(int64)
			seen[id]++
		}
		missing, doubled := 0, 0
		for id := range want {
			switch seen[id] {
			case 0:
				missing++
			case 1:
			default:
				doubled++
			}
		}
		if missing > 0 || doubled > 0 || len(seen) != len(want) {
			t.Fatalf("round %d: of %d records %d missing, %d doubled, %d read", round, len(want), missing, doubled, len(seen))
		}
	})
}

// TestKafkaToPostgresNewBroker is TestKafkaToKafkaNewBroker for
// examples/kafka_to_postgres.pipe, into the same table both times: every
// record of the new broker must be in the table.
func TestKafkaToPostgresNewBroker(t *testing.T) {
	dsn := os.Getenv("PIPE_PG_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		testkit.Missing(t, "postgresql (PIPE_PG_URL or 127.0.0.1:5432) is not reachable: %v", err)
	}
	defer conn.Close(context.Background())
	var b [4]byte
	rand.Read(b[:])
	table, offsets := "k2pg_newbroker_"+hex.EncodeToString(b[:]), "k2pg_newbroker_offsets_"+hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table+", "+offsets)
	})
	// Positions of its own, so that no other run of the example shares them.
	src, err := os.ReadFile("kafka_to_postgres.pipe")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), "  create_table = true\n", "  create_table = true\n  offsets_table = \""+offsets+"\"\n", 1)
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "kafka_to_postgres.pipe", []byte(text))
	if diags.HasErrors() || !strings.Contains(text, offsets) {
		t.Fatalf("%s\n%s", diags, text)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PG_URL", dsn)
	t.Setenv("PG_TABLE", table)
	newBrokerRounds(t, p, func(round int, _ string, want map[int64]bool) {
		rows, err := conn.Query(t.Context(), "SELECT id FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		missing := len(want)
		for _, id := range ids {
			if want[id] {
				missing--
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d records missing from the table", round, missing, len(want))
		}
	})
}

// newBrokerRounds runs p (a Kafka example reading events from topic "in"
// through big into out) twice on one state directory, each time against a
// new broker whose topic "in" holds 400 new events, until all are read and
// written, and then calls check with the ids the pipeline keeps.
func newBrokerRounds(t *testing.T, p *plan.Plan, check func(round int, brokers string, want map[int64]bool)) {
	state := t.TempDir()
	t.Setenv("IN_TOPIC", "in")
	t.Setenv("GROUP", "newbroker")
	for round, first := range []int{0, 1000} {
		b, err := devbroker.Start(t.Context(), devbroker.Options{Topics: []devbroker.Topic{{Name: "in", Partitions: 4}, {Name: "out", Partitions: 4}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("KAFKA_BROKERS", b.Addr())
		const n = 400
		want := produceEvents(t, b.Addr(), "in", first, n)
		// Until every record was read and written, or a while without.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		status := func(s exec.Snapshot) {
			counts := map[string]exec.StageStatus{}
			for _, st := range s.Stages {
				counts[st.Name] = st
			}
			if counts["events"].In == n && counts["out"].Out == counts["big"].Out && s.Checkpoint > 0 {
				cancel()
			}
		}
		err = exec.Run(ctx, p, &exec.Config{StateDir: state, Status: status, StatusInterval: 100 * time.Millisecond})
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		check(round, b.Addr(), want)
		b.Close()
	}
}

// produceEvents writes n events of kafka_to_kafka.pipe's shape with ids
// from first to topic and returns the ids the pipeline keeps.
func produceEvents(t *testing.T, brokers, topic string, first, n int) map[int64]bool {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Balancer: &kafka.RoundRobin{}}
	defer w.Close()
	want := map[int64]bool{}
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		id := first + i
		amount := float64(id*7919%10000) / 100
		msgs[i].Value = fmt.Appendf(nil, `{"id":%d,"user":"u%d","amount":%.2f,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:00Z"}`, id, id%10, amount)
		if amount > 50 {
			want[int64(id)] = true
		}
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	return want
}

// readCommitted reads topic with read_committed until want records arrived
// and no more came for a second.
func readCommitted(t *testing.T, brokers, topic string, want int) []stdlib.Record {
	t.Helper()
	spec := stdlib.Default.Lookup(stdlib.SourceKind, "kafka")
	attrs, err := spec.Values(map[string]any{"brokers": []any{brokers}, "topic": topic})
	if err != nil {
		t.Fatal(err)
	}
	src, err := spec.NewSource(stdlib.Config{Pipeline: "check", Stage: "check", Tasks: 1, Attrs: attrs})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	var got []stdlib.Record
	deadline := time.Now().Add(30 * time.Second)
	for quiet := 0; quiet < 4 && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		recs, err := src.Read(ctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
		if len(recs) == 0 && len(got) >= want {
			quiet++
		}
	}
	return got
}
