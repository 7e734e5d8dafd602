package redis

import (
	"context"
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
)

// TestRecordErrorsThroughPolicy runs a pipeline whose redis sink meets a
// key of another type for one record: that record goes to the
// dead-letter sink with the server's WRONGTYPE error, the others are
// written and the run goes on to its end (at_least_once and exactly_once).
func TestRecordErrorsThroughPolicy(t *testing.T) {
	cl := newClient(t)
	for _, delivery := range []string{"at_least_once", "exactly_once"} {
		t.Run(delivery, func(t *testing.T) {
			prefix := uniq("policy")
			t.Cleanup(func() { delPrefix(cl, prefix) })
			cl.Set(t.Context(), prefix+":h:3", "a string", 0)
			dir := t.TempDir()
			dlq := filepath.Join(dir, "dlq.jsonl")
			src := fmt.Sprintf(`pipeline policy {
  checkpoint = 200ms
}

source gen: generate {
  count  = 10
  fields = { id: seq(start = 0) }
}

sink hashes: redis {
  addr          = %q
  command       = hset
  key          := %q + string(id)
  positions_key = %q
  delivery      = %s
  on_error      = dead_letter(dlq)
}

sink dlq: file {
  path     = %q
  delivery = at_least_once
}

gen -> hashes
`, testAddr(), prefix+":h:", prefix+":pos", delivery, dlq)
			prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "policy.pipe", []byte(src))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			p, err := plan.Build(prog)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if err := exec.Run(ctx, p, &exec.Config{StateDir: filepath.Join(dir, "state")}); err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				got := cl.HGet(t.Context(), prefix+":h:"+strconv.Itoa(i), "id").Val()
				if i != 3 && got != strconv.Itoa(i) {
					t.Errorf("hash %d: id %q", i, got)
				}
			}
			b, err := os.ReadFile(dlq)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "WRONGTYPE") || !strings.Contains(lines[0], `"id":3`) {
				t.Fatalf("dead letters: %s", b)
			}
		})
	}
}
