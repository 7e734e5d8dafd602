package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
)

// TestKcat checks the dev broker and the exactly-once pipeline with a
// librdkafka client: `pipe broker --topic in:4 --topic out:4`, kcat -P
// writing the input while examples/kafka_to_kafka.pipe runs and is
// SIGKILLed and restarted, then kcat -C with isolation.level=read_committed
// reading every expected record exactly once. Set PIPE_KILLTEST=1 to run it
// (kcat must be installed: apt-get install kcat).
func TestKcat(t *testing.T) {
	n, kills := proctest.KillTest(t, 20000, 8)
	kcat, err := osexec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat)")
	}
	h := newProcHarness(t, "--topic", "in:4", "--topic", "out:4")
	file := h.pipeline(t, "exactly_once")

	// kcat -P writes the input over the whole run, one JSON record a line.
	prod := osexec.Command(kcat, "-P", "-b", h.brokers, "-t", "in")
	stdin, err := prod.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	prod.Stderr = &proctest.LogWriter{T: t, Prefix: "kcat -P: "}
	if err := prod.Start(); err != nil {
		t.Fatal(err)
	}
	fed := make(chan error, 1)
	go func() {
		var buf bytes.Buffer
		pause := time.Duration(kills) * 2 * time.Second / time.Duration(n/500)
		for i := range n {
			fmt.Fprintln(&buf, proctest.Event(i))
			if (i+1)%500 == 0 || i == n-1 {
				if _, err := io.Copy(stdin, &buf); err != nil {
					fed <- err
					return
				}
				time.Sleep(pause)
			}
		}
		fed <- stdin.Close()
	}()

	env := h.env(h.brokers, "in", "out", "kcat")
	state := filepath.Join(h.dir, "state")
	for range kills {
		cmd := h.start(t, file, env, state, "pipe run: ")
		time.Sleep(time.Duration(1000+rand.IntN(2000)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	if err := prod.Wait(); err != nil {
		t.Fatalf("kcat -P: %v", err)
	}
	cmd := h.start(t, file, env, state, "pipe run: ")
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()

	// kcat -C reads the whole output, committed records only, until the
	// expected count is reached and stays put.
	want := proctest.KeptEvents(n)
	var ids []int64
	deadline, stable := time.Now().Add(3*time.Minute), 0
	for time.Now().Before(deadline) && stable < 3 {
		time.Sleep(time.Second)
		out, err := osexec.Command(kcat, "-C", "-b", h.brokers, "-t", "out", "-X", "isolation.level=read_committed",
			"-o", "beginning", "-e", "-q", "-f", "%s\n").Output()
		if err != nil {
			t.Fatalf("kcat -C: %v", err)
		}
		prev := len(ids)
		ids = ids[:0]
		for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var rec struct {
				ID       int64  `json:"id"`
				Customer string `json:"customer"`
				Region   string `json:"region"`
			}
			if err := json.Unmarshal(line, &rec); err != nil || rec.Region != "EU" || rec.Customer == "" {
				t.Fatalf("kcat read a record not transformed: %s (%v)", line, err)
			}
			ids = append(ids, rec.ID)
		}
		if len(ids) >= len(want) && len(ids) == prev {
			stable++
		} else {
			stable = 0
		}
	}
	missing, doubled, extra := proctest.Tally(want, ids)
	t.Logf("kcat read %d records of %d expected after %d SIGKILLs: %d missing, %d doubled, %d unexpected",
		len(ids), len(want), kills, missing, doubled, extra)
	if missing > 0 || doubled > 0 || extra > 0 {
		t.Fatalf("exactly-once broken: %d missing, %d doubled, %d unexpected", missing, doubled, extra)
	}
}
