// Package proctest supports tests that run the pipe binary as a child
// process — the kill tests and the pipeline benchmarks: it finds the module,
// builds the binary, starts a development broker (one that a test can stop
// and start again, too) and logs a child's output.
package proctest

import (
	"bufio"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	b := &Broker{t: t, bin: bin, args: append([]string{"broker", "--port", "0", "--partitions", strconv.Itoa(partitions)}, flags...)}
	b.start()
	return b.Addr
}

// Broker is a `pipe broker` child process that keeps its data in a
// directory, so that a test can stop it and start it again at the same
// address. Up and Outage let a test's producer hold off while it is down.
type Broker struct {
	Addr string // host:port

	t    testing.TB
	bin  string
	args []string
	cmd  *osexec.Cmd
	mu   sync.RWMutex // held for writing while the broker is down
}

// StartDurableBroker runs `pipe broker` on a free port with its data in
// dir and partitions for auto-created topics, until the test ends.
func StartDurableBroker(t testing.TB, bin string, partitions int, dir string) *Broker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b := &Broker{t: t, bin: bin, args: []string{"broker", "--port", strconv.Itoa(port),
		"--partitions", strconv.Itoa(partitions), "--data-dir", dir}}
	b.start()
	return b
}

// start runs the broker and waits until it listens.
func (b *Broker) start() {
	b.t.Helper()
	cmd := osexec.Command(b.bin, b.args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.t.Fatalf("pipe broker printed no address: %v", err)
	}
	b.cmd, b.Addr = cmd, strings.TrimSpace(line)
}

// Outage stops the broker with sig (SIGKILL: a crash; SIGTERM: a clean
// stop), once no Up call runs, keeps it down for d and starts it again.
func (b *Broker) Outage(sig syscall.Signal, d time.Duration) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cmd.Process.Signal(sig)
	b.cmd.Wait()
	time.Sleep(d)
	addr := b.Addr
	b.start()
	if b.Addr != addr {
		b.t.Fatalf("broker restarted at %s, want %s", b.Addr, addr)
	}
}

// Up runs f while the broker is up: an Outage waits for it to return.
func (b *Broker) Up(f func() error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return f()
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
