package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestFileContract runs the contract suite on the file source and sink:
// the source reads in.jsonl, the sink writes out.jsonl, each in a
// directory of its own.
func TestFileContract(t *testing.T) {
	stdlibtest.Run(t, stdlibtest.Connector{
		Source: FileSourceSpec,
		Sink:   FileSinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
			writeFile(t, in, "")
			return &stdlibtest.Target{
				Source: map[string]any{"path": in},
				Sink:   map[string]any{"path": out},
				Produce: func(t *testing.T, ids []int64) {
					var b bytes.Buffer
					for _, id := range ids {
						fmt.Fprintf(&b, "{\"id\":%d,\"name\":\"n%d\"}\n", id, id)
					}
					appendFile(t, in, b.String())
				},
				Written: func(t *testing.T) []int64 {
					data, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					var ids []int64
					for dec := json.NewDecoder(bytes.NewReader(data)); dec.More(); {
						var r struct{ ID int64 }
						if err := dec.Decode(&r); err != nil {
							t.Fatalf("%s: %v", out, err)
						}
						ids = append(ids, r.ID)
					}
					return ids
				},
			}
		},
		Bad:         func(pos stdlib.Position) stdlib.Record { return stdlib.Record{Value: "not a record", Pos: pos} },
		BreakCommit: breakFileCommit,
	})
}

// breakFileCommit puts a directory where the file sink's state file is
// renamed to: the commit fails after the data was written and synced.
func breakFileCommit(t *testing.T, tg *stdlibtest.Target) func() {
	out := tg.Sink["path"].(string)
	ext := filepath.Ext(out)
	state := sinkStatePath(filepath.Dir(out), strings.TrimSuffix(filepath.Base(out), ext), ext)
	old, err := os.ReadFile(state)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(state)
	must(t, os.MkdirAll(filepath.Join(state, "x"), 0o755))
	return func() {
		must(t, os.RemoveAll(state))
		if old != nil {
			must(t, os.WriteFile(state, old, 0o644))
		}
	}
}
