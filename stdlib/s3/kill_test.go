package s3

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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
			k := newKillRun(t, newEnv(t), testEndpoint, bin, format, n, kills)
			// The input grows while the pipeline is killed, so that kills
			// land while records are in flight.
			k.Produce = func() error { return feed(k.in, k.input, 3*kills, time.Duration(kills)*700*time.Millisecond) }
			k.Run(t)
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
	k := newKillRun(t, newEnvAt(t, gw.addr), gw.addr, bin, "json", n, 0)
	k.Produce = func() error { return feed(k.in, k.input, 30, 8*time.Second) }
	k.During = func(t *testing.T) {
		for range 2 {
			time.Sleep(time.Duration(1500+rand.IntN(1500)) * time.Millisecond)
			gw.restart(2 * time.Second)
		}
	}
	k.Run(t)
}

// killRun is one pipeline of the kill tests (proctest.Kill): its files,
// input and bucket.
type killRun struct {
	proctest.Kill
	e     *s3Env
	in    string
	input []byte
	began time.Time
}

// newKillRun writes the pipeline in format and its input of n records,
// and returns its round of kills without its Produce.
func newKillRun(t *testing.T, e *s3Env, endpoint, bin, format string, n, kills int) *killRun {
	k := &killRun{Kill: *proctest.NewKill(t, bin, format, strings.Replace(killPipeline, "FORMAT", format, 1)), e: e, began: time.Now()}
	k.in = filepath.Join(k.Dir, "in.jsonl")
	if err := os.WriteFile(k.in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var input bytes.Buffer
	for id := 1; id <= n; id++ {
		fmt.Fprintf(&input, "{\"id\":%d,\"name\":\"n%d\"}\n", id, id)
	}
	k.input = input.Bytes()
	k.Kills = kills
	k.Env = []string{"PIPE_IN=" + k.in, "S3_ENDPOINT=http://" + endpoint, "S3_BUCKET=" + e.bucket,
		"S3_ACCESS_KEY=" + testAccessKey, "S3_SECRET_KEY=" + testSecretKey}
	k.Life = func() time.Duration { return time.Duration(300+rand.IntN(900)) * time.Millisecond }
	k.Progress = func() string {
		return fmt.Sprintf("at %v: %d objects", time.Since(k.began).Round(time.Millisecond), len(e.keys(t, "out/")))
	}
	// Until the objects hold n records, and a second more for
	// anything that would come after them.
	k.Complete = func(t *testing.T) {
		deadline := time.Now().Add(60 * time.Second)
		for len(e.readIDs(t, format)) < n && time.Now().Before(deadline) {
			time.Sleep(300 * time.Millisecond)
		}
		t.Logf("last run: every record in after %v", time.Since(k.began).Round(time.Millisecond))
		time.Sleep(time.Second)
	}
	k.Check = func(t *testing.T) proctest.Tallied {
		got := e.readIDs(t, format)
		t.Logf("%d records in %d objects", len(got), len(e.keys(t, "out/")))
		return proctest.TallyIDs(proctest.Want(1, int64(n)+1), got)
	}
	return k
}

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
