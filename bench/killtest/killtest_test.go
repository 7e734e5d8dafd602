// Package killtest is the crash test of exactly-once delivery: it runs
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
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"

	"pipe.dev/pipe/bench/gen"
)

func TestKill(t *testing.T) {
	records, wantKills := proctest.KillTest(t, 500000, 25)
	root := proctest.ModuleRoot(t)
	dir := t.TempDir()
	bin := proctest.BuildPipe(t)

	// The input is generated up front, for the expected output, and fed
	// to the input file in chunks while pipe run is killed and restarted:
	// the source follows the file, so every kill lands while records are
	// in flight, however fast the pipeline is.
	var input bytes.Buffer
	if err := gen.Write(&input, records, 7); err != nil {
		t.Fatal(err)
	}
	want := expected(t, bytes.NewReader(input.Bytes()))
	t.Logf("%d input records, %d expected output records", records, len(want))
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pipeline := followed(t, root, dir)
	fed := make(chan error, 1)
	go func() {
		fed <- feed(in, input.Bytes(), 4*wantKills, time.Duration(wantKills)*600*time.Millisecond, nil)
	}()

	out := filepath.Join(dir, "out", "out.jsonl")
	r := &runner{t: t, bin: bin, dir: dir, pipeline: pipeline, in: in, out: out}
	r.killRuns(wantKills)
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	r.finish(len(want))
	got := readCanonical(t, out)
	compare(t, got, want)
}

// runner runs the pipeline again and again on one state directory.
type runner struct {
	t                  *testing.T
	bin, dir, pipeline string
	in, out            string // $PIPE_IN and $PIPE_OUT
}

// start starts `pipe run`; the channel gets its end.
func (r *runner) start() (*osexec.Cmd, *bytes.Buffer, chan error) {
	cmd := osexec.Command(r.bin, "run", r.pipeline, "--state-dir", filepath.Join(r.dir, "state"))
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "PIPE_IN="+r.in, "PIPE_OUT="+r.out)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, &logs, done
}

// killRuns starts pipe run n times, SIGKILLing each after a random 0.2 to
// 0.9 seconds.
func (r *runner) killRuns(n int) {
	t := r.t
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	progress, prev := 0, 0
	for kill := range n {
		cmd, logs, done := r.start()
		select {
		case err := <-done:
			t.Fatalf("run %d ended on its own (a followed source never ends): %v\n%s", kill, err, logs)
		case <-time.After(time.Duration(200+rng.IntN(700)) * time.Millisecond):
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := <-done
		var ee *osexec.ExitError
		if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("run %d: %v\n%s", kill, err, logs)
		}
		if n := countLines(r.out); n > prev {
			progress++
			prev = n
		}
	}
	t.Logf("%d kills, output grew after %d of them (%d records then)", n, progress, prev)
}

// finish runs pipe run until the output has n records, then stops it
// cleanly. It runs for a second at least: a SIGTERM before pipe run
// handles signals would kill it.
func (r *runner) finish(n int) {
	t := r.t
	cmd, logs, done := r.start()
	deadline := time.Now().Add(2 * time.Minute)
	for early := time.Now().Add(time.Second); countLines(r.out) < n || time.Now().Before(early); {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("final run wrote %d of %d records in 2 minutes\n%s", countLines(r.out), n, logs)
		}
		select {
		case err := <-done:
			t.Fatalf("final run ended early: %v\n%s", err, logs)
		case <-time.After(100 * time.Millisecond):
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("final run: %v\n%s", err, logs)
	}
}

// followed writes examples/bench/file_map_file.pipe with its source
// following the input file and returns the copy's path.
func followed(t *testing.T, root, dir string) string {
	src, err := os.ReadFile(filepath.Join(root, "examples", "bench", "file_map_file.pipe"))
	if err != nil {
		t.Fatal(err)
	}
	in := "  path   = \"${env:PIPE_IN}\"\n"
	text := strings.Replace(string(src), in, in+"  follow = true\n  poll   = 20ms\n", 1)
	if text == string(src) {
		t.Fatal("file_map_file.pipe: source block not found")
	}
	path := filepath.Join(dir, "file_map_file.pipe")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// feed appends data to path in n chunks of whole lines, spread over d.
// rotate, when not nil, is called after each chunk with the file written
// and returns the file to write to next.
func feed(path string, data []byte, n int, d time.Duration, rotate func(chunk int, f *os.File) (*os.File, error)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	size := len(data)/n + 1
	for chunk := 0; len(data) > 0; chunk++ {
		end := min(size, len(data))
		if i := bytes.IndexByte(data[end-1:], '\n'); i >= 0 {
			end += i
		} else {
			end = len(data)
		}
		if _, err := f.Write(data[:end]); err != nil {
			return err
		}
		data = data[end:]
		time.Sleep(d / time.Duration(n))
		if rotate != nil && len(data) > 0 {
			if f, err = rotate(chunk, f); err != nil {
				return err
			}
		}
	}
	return nil
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

// compare reports the first difference and the counts of missing and
// doubled records.
func compare(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) == len(want) {
		same := true
		for i := range got {
			if got[i] != want[i] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	missing, doubled := 0, 0
	for _, w := range want {
		switch seen[w] {
		case 0:
			missing++
		case 1:
		default:
			doubled++
		}
	}
	first := -1
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			first = i
			break
		}
	}
	msg := fmt.Sprintf("output has %d records, want %d: %d missing, %d doubled", len(got), len(want), missing, doubled)
	if first >= 0 {
		msg += fmt.Sprintf("; first difference at record %d:\n got %s\nwant %s", first+1, got[first], want[first])
	}
	t.Fatal(msg)
}
