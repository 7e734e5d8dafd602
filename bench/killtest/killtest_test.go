// Package killtest is the crash test of exactly-once delivery: it runs
// examples/bench/file_map_file.pipe, SIGKILLs `pipe run` at random moments
// many times, restarts it each time with the same state directory, and
// checks that the output equals the expected output exactly: nothing
// missing, nothing doubled, in order.
//
// It builds the binary and takes tens of seconds, so it runs only with
// PIPE_KILLTEST=1 (CI sets it):
//
//	PIPE_KILLTEST=1 go test -v -run TestKill ./bench/killtest/
//
// PIPE_KILLTEST_RECORDS (default 500000) and PIPE_KILLTEST_KILLS (default
// 25) tune it.
package killtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
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

	in := filepath.Join(dir, "in.jsonl")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.Write(f, records, 7); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := expected(t, in)
	t.Logf("%d input records, %d expected output records", records, len(want))

	out := filepath.Join(dir, "out", "out.jsonl")
	state := filepath.Join(dir, "state")
	pipeline := filepath.Join(root, "examples", "bench", "file_map_file.pipe")
	start := func() (*osexec.Cmd, *bytes.Buffer) {
		cmd := osexec.Command(bin, "run", pipeline, "--state-dir", state)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PIPE_IN="+in, "PIPE_OUT="+out)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &logs
	}

	// A first uninterrupted run elsewhere times the pipeline. Kills come
	// within a fifth of that after a start, so that most land while the
	// pipeline works and the output grows by a few checkpoints (200ms
	// apart) between them.
	full := timeRun(t, bin, pipeline, dir, in)
	t.Logf("an uninterrupted run takes %v", full)
	window := max(full/5, 300*time.Millisecond)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills, progress := 0, 0
	prev := 0
	for attempt := 0; kills < wantKills; attempt++ {
		if attempt > 10*wantKills {
			t.Fatalf("only %d of %d runs could be killed before finishing: use more records (PIPE_KILLTEST_RECORDS)", kills, wantKills)
		}
		cmd, logs := start()
		delay := time.Duration(rng.Int64N(int64(window)))
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d failed on its own: %v\n%s", attempt, err, logs)
			}
			// It finished before the kill; later runs find little or
			// nothing left, so kill them sooner.
			window = max(window/2, 20*time.Millisecond)
			continue
		case <-time.After(delay):
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		err := <-done
		var ee *osexec.ExitError
		if errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
			kills++
		} else if err != nil {
			t.Fatalf("run %d: %v\n%s", attempt, err, logs)
		}
		if n := countLines(out); n > prev {
			progress++
			prev = n
		}
	}
	t.Logf("%d kills, output grew after %d of them", kills, progress)

	// The last run goes to the end.
	cmd, logs := start()
	finished := make(chan error, 1)
	go func() { finished <- cmd.Wait() }()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatalf("final run: %v\n%s", err, logs)
		}
	case <-time.After(5*full + time.Minute):
		cmd.Process.Kill()
		t.Fatalf("final run did not end\n%s", logs)
	}

	got := readCanonical(t, out)
	compare(t, got, want)
}

// timeRun runs the pipeline once to the end in a scratch directory and
// checks its output too.
func timeRun(t *testing.T, bin, pipeline, dir, in string) time.Duration {
	scratch := filepath.Join(dir, "scratch")
	out := filepath.Join(scratch, "out.jsonl")
	cmd := osexec.Command(bin, "run", pipeline, "--state-dir", filepath.Join(scratch, "state"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PIPE_IN="+in, "PIPE_OUT="+out)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, b)
	}
	return time.Since(start)
}

// expected computes the output from the input with encoding/json.
func expected(t *testing.T, in string) []string {
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
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
