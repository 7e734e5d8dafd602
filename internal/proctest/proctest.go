// Package proctest supports tests that run the pipe binary as a child
// process — the kill tests and the pipeline benchmarks: it finds the module,
// builds the binary, starts a development broker and logs a child's output.
package proctest

import (
	"bufio"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := osexec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// BuildPipe builds ./cmd/pipe into a temporary directory and returns the
// binary's path.
func BuildPipe(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pipe")
	build := osexec.Command("go", "build", "-o", bin, "./cmd/pipe")
	build.Dir = ModuleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pipe: %v\n%s", err, out)
	}
	return bin
}

// StartBroker runs `pipe broker` on a free port, with partitions for
// auto-created topics and the extra flags given, until the test ends, and
// returns its address.
func StartBroker(t testing.TB, bin string, partitions int, flags ...string) string {
	t.Helper()
	args := append([]string{"broker", "--port", "0", "--partitions", strconv.Itoa(partitions)}, flags...)
	cmd := osexec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("pipe broker printed no address: %v", err)
	}
	return strings.TrimSpace(line)
}

// KillTest skips t unless PIPE_KILLTEST=1 and returns how many records
// and kills to run: PIPE_KILLTEST_RECORDS and PIPE_KILLTEST_KILLS when
// set, else the defaults given.
func KillTest(t testing.TB, records, kills int) (int, int) {
	t.Helper()
	if os.Getenv("PIPE_KILLTEST") != "1" {
		t.Skip("set PIPE_KILLTEST=1 to run the kill test")
	}
	return envInt("PIPE_KILLTEST_RECORDS", records), envInt("PIPE_KILLTEST_KILLS", kills)
}

// envInt returns the environment variable name as a non-negative int, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(os.Getenv(name))); err == nil && n >= 0 {
		return n
	}
	return def
}

// LogWriter logs each line a child process writes, with a prefix.
type LogWriter struct {
	T      testing.TB
	Prefix string
}

func (w *LogWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if l != "" {
			w.T.Log(w.Prefix + l)
		}
	}
	return len(p), nil
}
