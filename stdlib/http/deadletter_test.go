package httpconn

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/core"
)

// TestSinkDeadLetter runs file → http with on_error = dead_letter(dlq)
// against a receiver that answers 422 with a JSON error to the records
// with an odd id: those land in the dead-letter file, each envelope's
// error naming the status and the body; the others reach the receiver;
// the run ends cleanly.
func TestSinkDeadLetter(t *testing.T) {
	var (
		mu  sync.Mutex
		got []int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v struct{ ID int }
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &v)
		if v.ID%2 == 1 {
			w.WriteHeader(422)
			fmt.Fprintf(w, `{"error":"id %d is odd"}`, v.ID)
			return
		}
		mu.Lock()
		got = append(got, v.ID)
		mu.Unlock()
	}))
	defer srv.Close()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "{\"id\":%d}\n", i)
	}
	os.WriteFile(in, []byte(b.String()), 0o644)
	src := fmt.Sprintf(`pipeline dl {
  delivery = at_least_once
}
schema Row {
  id: int
}
source in: file {
  path   = %q
  format = json
  schema = Row
}
sink api: http {
  url         = %q
  concurrency = 1
  on_error    = dead_letter(dlq)
}
sink dlq: file {
  path = %q
}
in -> api
`, in, srv.URL, filepath.Join(dir, "dlq.jsonl"))
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "dl.pipe", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Run(t.Context(), p, &exec.Config{StateDir: filepath.Join(dir, "state")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[0 2 4 6 8]" {
		t.Errorf("received %v", got)
	}
	dl, err := os.ReadFile(filepath.Join(dir, "dlq.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(dl)), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d dead letters:\n%s", len(lines), dl)
	}
	for _, l := range lines {
		var env struct {
			Error    string
			Original struct{ ID int }
		}
		if err := json.Unmarshal([]byte(l), &env); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`422 Unprocessable Entity: {"error":"id %d is odd"}`, env.Original.ID)
		if env.Original.ID%2 != 1 || !strings.Contains(env.Error, want) {
			t.Errorf("envelope %s: want an odd id and %q in the error", l, want)
		}
	}
}
