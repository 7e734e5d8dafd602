// Package killtest is the crash test of exactly-once delivery of the file
// connectors: through proctest.Kill, it runs
// examples/bench/file_map_file.pipe (its source following the input file,
// which the test appends to meanwhile), SIGKILLs `pipe run` at random
// moments many times, restarts it each time with the same state directory,
// and checks that the output equals the expected output exactly: nothing
// missing, nothing doubled, in order. TestKillRotateRename and
// TestKillRotateCopytruncate do the same while the input is rotated.
//
// It builds the binary and takes tens of seconds, so it runs only with
// PIPE_KILLTEST=1 (CI sets it):
//
//	PIPE_KILLTEST=1 go test -v -run 'TestKill.*' ./bench/killtest/
//
// PIPE_KILLTEST_RECORDS (default 500000; 200000 when rotating) and
// PIPE_KILLTEST_KILLS (default 25; 12 when rotating) tune it.
package killtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"

	"pipe.dev/pipe/bench/gen"
)

func TestKill(t *testing.T) {
	records, kills := proctest.KillTest(t, 500000, 25)
	dir := t.TempDir()
	// The input is generated up front, for the expected output, and fed
	// to the input file in chunks while pipe run is killed and restarted:
	// the source follows the file, so every kill lands while records are
	// in flight, however fast the pipeline is.
	input, want := generate(t, records, 7)
	t.Logf("%d input records, %d expected output records", records, len(want))
	in := writeFile(t, filepath.Join(dir, "in.jsonl"), nil)
	k := fileKill(t, dir, in, kills, want, true)
	k.Produce = func() error { return feed(in, lineChunks(input, 4*kills), nil) }
	k.Run(t)
}

// fileKill is the kill round of examples/bench/file_map_file.pipe, its
// source following in (a glob) and its output compared with want, in
// order when ordered.
func fileKill(t *testing.T, dir, in string, kills int, want []string, ordered bool) *proctest.Kill {
	pipe := benchPipe(t, dir, "file_map_file.pipe")
	return killRound(t, dir, pipe, in, jsonLines(filepath.Join(dir, "out", "out.jsonl")), kills, want, ordered)
}

// output is the output file of a kill round: count says how many records
// it holds so far, records returns them in canonical form (failing the
// test on an output that is not whole).
type output struct {
	path    string
	count   func() int
	records func(t *testing.T) []string
}

// jsonLines is an output of JSON lines.
func jsonLines(path string) output {
	return output{
		path:    path,
		count:   func() int { return countLines(path) },
		records: func(t *testing.T) []string { return readCanonical(t, path) },
	}
}

// killRound is the kill round of the pipeline file pipe reading in
// (${env:PIPE_IN}) and writing out (${env:PIPE_OUT}): after the last run
// out must hold want, in order when ordered.
func killRound(t *testing.T, dir, pipe, in string, out output, kills int, want []string, ordered bool) *proctest.Kill {
	return &proctest.Kill{
		Bin: proctest.BuildPipe(t), File: pipe, State: filepath.Join(dir, "state"),
		Dir: dir, Env: []string{"PIPE_IN=" + in, "PIPE_OUT=" + out.path}, Name: "file", Kills: kills,
		Life:     func() time.Duration { return time.Duration(200+rand.IntN(700)) * time.Millisecond },
		Progress: func() string { return fmt.Sprintf("%d records out", out.count()) },
		Complete: func(t *testing.T) {
			for deadline := time.Now().Add(2 * time.Minute); out.count() < len(want); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the last run wrote %d of %d records in 2 minutes", out.count(), len(want))
				}
			}
		},
		Check: func(t *testing.T) proctest.Tallied {
			got := out.records(t)
			if !ordered {
				slices.Sort(got)
				slices.Sort(want)
			}
			return compare(t, got, want)
		},
	}
}

// benchPipe writes examples/bench/file_map_file.pipe to dir/name with
// its source following the input file and each of the edits made (pairs
// of the text to replace and its replacement), and returns the copy's
// path.
func benchPipe(t *testing.T, dir, name string, edits ...string) string {
	src, err := os.ReadFile(filepath.Join(proctest.ModuleRoot(t), "examples", "bench", "file_map_file.pipe"))
	if err != nil {
		t.Fatal(err)
	}
	in := "  path   = \"${env:PIPE_IN}\"\n"
	edits = append([]string{in, in + "  follow = true\n  poll   = 20ms\n"}, edits...)
	text := string(src)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("file_map_file.pipe: %q not found", edits[i])
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	return writeFile(t, filepath.Join(dir, name), []byte(text))
}

// feed appends the chunks to path, one every 150ms (about four a run of
// pipe run, which lives 200ms to 900ms). rotate, when not nil, is called
// after each chunk but the last with the file written and returns the
// file to write to next.
func feed(path string, chunks [][]byte, rotate func(chunk int, f *os.File) (*os.File, error)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	for i, c := range chunks {
		if _, err := f.Write(c); err != nil {
			return err
		}
		time.Sleep(150 * time.Millisecond)
		if rotate != nil && i < len(chunks)-1 {
			if f, err = rotate(i, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// lineChunks cuts data into at most n chunks of whole lines.
func lineChunks(data []byte, n int) [][]byte {
	var chunks [][]byte
	size := len(data)/n + 1
	for len(data) > 0 {
		end := min(size, len(data))
		if i := bytes.IndexByte(data[end-1:], '\n'); i >= 0 {
			end += i
		} else {
			end = len(data)
		}
		chunks = append(chunks, data[:end])
		data = data[end:]
	}
	return chunks
}

// generate returns records input records of the generator with seed, and
// the output expected of them.
func generate(t *testing.T, records int, seed uint64) ([]byte, []string) {
	var input bytes.Buffer
	if err := gen.Write(&input, records, seed); err != nil {
		t.Fatal(err)
	}
	return input.Bytes(), expected(t, bytes.NewReader(input.Bytes()))
}

// writeFile writes data to path, making its directory, and returns path.
func writeFile(t *testing.T, path string, data []byte) string {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// expected computes the output from the input with encoding/json.
func expected(t *testing.T, in io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if !gen.Transform(m) {
			continue
		}
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return out
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte{'\n'})
}

func readCanonical(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		c, err := gen.Canonical(line)
		if err != nil {
			t.Fatalf("output record %d: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
	return out
}

// compare tallies got against want and reports the first difference.
func compare(t *testing.T, got, want []string) proctest.Tallied {
	t.Helper()
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	res := proctest.Tallied{Read: len(got)}
	for _, w := range want {
		switch seen[w] {
		case 0:
			res.Missing++
		case 1:
		default:
			res.Doubled++
		}
		delete(seen, w)
	}
	res.Extra = len(seen)
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("first difference at record %d:\n got %s\nwant %s", i+1, got[i], want[i])
			break
		}
	}
	return res
}
