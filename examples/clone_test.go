package examples

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
)

// quickstartCmd matches the README's commands that run a quickstart.
var quickstartCmd = regexp.MustCompile(`(?m)^(go run \./cmd/pipe run [^#\n]*?)\s*(#.*)?$`)

// TestReadmeQuickstartsInClone clones the repository as a new user would
// and runs, as the README shows them, every quickstart command of its
// shell blocks: each must write its output files (and the Kafka one,
// which runs until Ctrl-C, must stop cleanly on SIGINT), with no record
// twice, and leave the work tree clean (state and output are ignored).
// It covers what is committed: uncommitted changes are not in the clone.
func TestReadmeQuickstartsInClone(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and builds it")
	}
	root := proctest.ModuleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		for _, m := range quickstartCmd.FindAllStringSubmatch(block[1], -1) {
			cmds = append(cmds, strings.TrimSpace(m[1]))
		}
	}
	if len(cmds) < 2 {
		t.Fatalf("the README shows %d quickstart commands, want at least 2: %q", len(cmds), cmds)
	}
	clone := filepath.Join(t.TempDir(), "pipe")
	if out, err := osexec.Command("git", "clone", "-q", root, clone).CombinedOutput(); err != nil {
		t.Skipf("git clone: %v\n%s", err, out) // not a git checkout
	}
	// `go run ./cmd/pipe` builds and runs the command; it is built once
	// here, so that SIGINT reaches pipe alone (go run exits 1 after one).
	bin := filepath.Join(t.TempDir(), "pipe")
	build := osexec.Command("go", "build", "-o", bin, "./cmd/pipe")
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the clone: %v\n%s", err, out)
	}
	for _, c := range cmds {
		t.Run(c, func(t *testing.T) {
			runQuickstart(t, clone, strings.Replace(c, "go run ./cmd/pipe", bin, 1))
		})
	}
	status, err := osexec.Command("git", "-C", clone, "status", "--porcelain", "--ignored=no").Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(status) > 0 {
		t.Errorf("the quickstarts left the work tree dirty:\n%s", status)
	}
}

// runQuickstart runs one README command in dir; one that has not ended
// once its output stopped growing gets SIGINT, as Ctrl-C would send.
func runQuickstart(t *testing.T, dir, command string) {
	outs := map[string][]string{
		"examples/quickstart.pipe":       {"out/quickstart-eu.jsonl", "out/quickstart-rest.jsonl"},
		"examples/quickstart_kafka.pipe": {"out/quickstart-kafka.jsonl"},
	}
	var files []string
	for pipe, fs := range outs {
		if strings.Contains(command, pipe) {
			files = fs
		}
	}
	if files == nil {
		t.Fatalf("the test does not know the output of %q", command)
	}
	args := strings.Fields(command)
	cmd := osexec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	size := func() (n int64) {
		for _, f := range files {
			if st, err := os.Stat(filepath.Join(dir, f)); err == nil {
				n += st.Size()
			}
		}
		return n
	}
	deadline := time.After(3 * time.Minute)
	var last int64
	stable := 0
	for ended := false; !ended; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", command, err, stderr.Bytes())
			}
			ended = true
		case <-deadline:
			cmd.Process.Kill()
			<-done
			t.Fatalf("%s: no result within 3 minutes\n%s", command, stderr.Bytes())
		case <-time.After(time.Second):
			n := size()
			if n > 0 && n == last {
				stable++
			} else {
				stable = 0
			}
			last = n
			if stable == 5 { // five seconds without growth: stop it as Ctrl-C does
				cmd.Process.Signal(syscall.SIGINT)
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("%s: after SIGINT: %v\n%s", command, err, stderr.Bytes())
					}
				case <-time.After(time.Minute):
					cmd.Process.Kill()
					t.Fatalf("%s: did not stop within a minute of SIGINT\n%s", command, stderr.Bytes())
				}
				ended = true
			}
		}
	}
	total := 0
	seen := map[float64]bool{}
	for _, f := range files {
		recs := readJSONL(t, filepath.Join(dir, f))
		checkFiltered(t, f, seen, recs)
		total += len(recs)
	}
	// Half of the generated amounts (uniform in [1, 100)) are over 50.
	if total < 300 {
		t.Errorf("%s wrote %d records, want about half of what it generates\n%s", command, total, stderr.Bytes())
	}
}
