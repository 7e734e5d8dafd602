package s3

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"pipe.dev/pipe/internal/proctest"
)

// killPipeline follows a JSON lines file into the test bucket, partitioned
// by a per-record prefix, exactly once, with objects rotated every 40
// records and uploaded as soon as they are complete, ahead of their
// checkpoint: a kill leaves uploaded objects that no checkpoint covers.
const killPipeline = `pipeline s3kill {
  delivery   = exactly_once
  checkpoint = 300ms
}

schema Rec {
  id:   int
  name: string
}

source in: file {
  path   = "${env:PIPE_IN}"
  format = json
  schema = Rec
  follow = true
  poll   = 50ms
}

sink out: s3 {
  endpoint       = "${env:S3_ENDPOINT}"
  bucket         = "${env:S3_BUCKET}"
  access_key     = "${env:S3_ACCESS_KEY}"
  secret_key     = "${env:S3_SECRET_KEY}"
  path_style     = true
  retry_timeout  = 10s
  format         = FORMAT
  prefix        := "out/k=" + string(id % 3) + "/"
  rotate_records = 40
  upload_size    = 0B
}

in -> out
`

// TestKillS3 runs a pipeline from a growing file into the S3 sink under
// pipe run, SIGKILLs it at random moments (12 times by default), restarts
// it each time with the same state directory, lets a last run finish and
// then reads every object back: the records must equal the input, none
// missing, none doubled. It runs for JSON lines and for Parquet. Set
// PIPE_KILLTEST=1 to run it; PIPE_KILLTEST_RECORDS and PIPE_KILLTEST_KILLS
// scale it.
func TestKillS3(t *testing.T) {
	n, kills := proctest.KillTest(t, 3000, 12)
	bin := proctest.BuildPipe(t)
	for _, format := range []string{"json", "parquet"} {
		t.Run(format, func(t *testing.T) {
			k := newKillRun(t, newEnv(t), testEndpoint, bin, format, n)
			// The input grows while the pipeline is killed, so that kills
			// land while records are in flight.
			fed := make(chan error, 1)
			go func() { fed <- feed(k.in, k.input, 3*kills, time.Duration(kills)*700*time.Millisecond) }()
			for i := range kills {
				cmd, done := k.start()
				select {
				case err := <-done:
					t.Fatalf("run %d ended on its own: %v", i, err)
				case <-time.After(time.Duration(300+rand.IntN(900)) * time.Millisecond):
				}
				cmd.Process.Signal(syscall.SIGKILL)
				err := <-done
				var ee *osexec.ExitError
				if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("run %d: %v", i, err)
				}
				t.Logf("kill %d at %v: %d objects", i+1, time.Since(k.began).Round(time.Millisecond), len(k.e.keys(t, "out/")))
			}
			if err := <-fed; err != nil {
				t.Fatal(err)
			}
			cmd, done := k.start()
			k.finish(cmd, done)
		})
	}
}

// TestKillS3ServerRestart stops the S3 server twice while the pipeline
// runs (SIGKILL, down for 2s, started again on the same data): the sink
// retries, and the objects hold every record once. It runs a server of
// its own (versitygw, as .ci/s3server installs it). Set PIPE_KILLTEST=1
// to run it.
func TestKillS3ServerRestart(t *testing.T) {
	n, _ := proctest.KillTest(t, 3000, 0)
	gw := startGateway(t)
	bin := proctest.BuildPipe(t)
	k := newKillRun(t, newEnvAt(t, gw.addr), gw.addr, bin, "json", n)
	fed := make(chan error, 1)
	go func() { fed <- feed(k.in, k.input, 30, 8*time.Second) }()
	cmd, done := k.start()
	for range 2 {
		time.Sleep(time.Duration(1500+rand.IntN(1500)) * time.Millisecond)
		gw.restart(2 * time.Second)
	}
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("pipe run ended during the outages: %v", err)
	default:
	}
	k.finish(cmd, done)
}

// killRun is one pipeline of the kill tests: its files, input and bucket.
type killRun struct {
	t              *testing.T
	e              *s3Env
	bin, dir, file string
	in, format     string
	input          []byte
	env            []string
	n              int
	began          time.Time
}

func newKillRun(t *testing.T, e *s3Env, endpoint, bin, format string, n int) *killRun {
	k := &killRun{t: t, e: e, bin: bin, dir: t.TempDir(), format: format, n: n, began: time.Now()}
	k.file = filepath.Join(k.dir, "kill.pipe")
	if err := os.WriteFile(k.file, []byte(strings.Replace(killPipeline, "FORMAT", format, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	k.in = filepath.Join(k.dir, "in.jsonl")
	if err := os.WriteFile(k.in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var input bytes.Buffer
	for id := 1; id <= n; id++ {
		fmt.Fprintf(&input, "{\"id\":%d,\"name\":\"n%d\"}\n", id, id)
	}
	k.input = input.Bytes()
	k.env = append(os.Environ(), "PIPE_IN="+k.in, "S3_ENDPOINT=http://"+endpoint, "S3_BUCKET="+e.bucket,
		"S3_ACCESS_KEY="+testAccessKey, "S3_SECRET_KEY="+testSecretKey)
	return k
}

// start starts pipe run; the channel gets its end.
func (k *killRun) start() (*osexec.Cmd, chan error) {
	cmd := osexec.Command(k.bin, "run", "-q", "--state-dir", filepath.Join(k.dir, "state"), k.file)
	cmd.Env, cmd.Dir = k.env, k.dir
	cmd.Stderr = &proctest.LogWriter{T: k.t, Prefix: k.format + ": "}
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, done
}

// finish waits until the objects hold n records, stops the last run and
// checks that they hold every input record exactly once.
func (k *killRun) finish(cmd *osexec.Cmd, done chan error) {
	t, e, n := k.t, k.e, k.n
	deadline := time.Now().Add(60 * time.Second)
	for len(e.readIDs(t, k.format)) < n && time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("last run: every record in after %v", time.Since(k.began).Round(time.Millisecond))
	time.Sleep(time.Second) // anything more that would come
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("last run: %v", err)
	}
	got := e.readIDs(t, k.format)
	slices.Sort(got)
	var missing, doubled []int64
	for id, i := int64(1), 0; id <= int64(n); id++ {
		c := 0
		for ; i < len(got) && got[i] == id; i++ {
			c++
		}
		if c == 0 {
			missing = append(missing, id)
		} else if c > 1 {
			doubled = append(doubled, id)
		}
	}
	if len(missing) > 0 || len(doubled) > 0 || len(got) != n {
		t.Fatalf("%d records in %d objects, want %d: missing %v, doubled %v", len(got), len(e.keys(t, "out/")), n, head(missing), head(doubled))
	}
	t.Logf("%d records in %d objects: each once", len(got), len(e.keys(t, "out/")))
}

func head(l []int64) []int64 { return l[:min(len(l), 20)] }

// readIDs reads every object under out/ and returns the ids of the
// records they hold, checking that each record is in its prefix.
func (e *s3Env) readIDs(t *testing.T, format string) []int64 {
	var out []int64
	for _, k := range e.keys(t, "out/") {
		data := e.get(t, k)
		var ids []int64
		if format == "parquet" {
			type rec struct {
				ID   int64  `parquet:"id"`
				Name string `parquet:"name"`
			}
			rows, err := parquet.Read[rec](bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			for _, r := range rows {
				ids = append(ids, r.ID)
			}
		} else {
			for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var id int64
				if _, err := fmt.Sscanf(l, `{"id":%d,`, &id); err != nil {
					t.Fatalf("%s: %q: %v", k, l, err)
				}
				ids = append(ids, id)
			}
		}
		for _, id := range ids {
			if !strings.HasPrefix(k, fmt.Sprintf("out/k=%d/", id%3)) {
				t.Fatalf("record %d in %s", id, k)
			}
		}
		out = append(out, ids...)
	}
	return out
}

// feed appends data to path in chunks (cut at line ends) spread over span.
func feed(path string, data []byte, chunks int, span time.Duration) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size := len(data)/chunks + 1
	for len(data) > 0 {
		end := min(size, len(data))
		if i := bytes.IndexByte(data[end-1:], '\n'); i >= 0 {
			end += i
		}
		if _, err := f.Write(data[:end]); err != nil {
			return err
		}
		data = data[end:]
		time.Sleep(span / time.Duration(chunks))
	}
	return nil
}
