package killtest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/stdlib/protobuf"
)

// outProto is the message the protobuf kill test writes: the benchmark
// transform's output.
const outProto = `syntax = "proto3";
package killtest;

message Out {
  int64 id = 1;
  double amount = 2;
  string country = 3;
  string event = 4;
  string ts = 5;
  string customer = 6;
  string region = 7;
}
`

// protobufPipe is examples/bench/file_map_file.pipe writing length-delimited
// Protobuf messages instead of JSON lines.
const protobufPipe = `pipeline file_map_protobuf {
  delivery   = exactly_once
  checkpoint = 200ms
}

schema Out from "out.proto#killtest.Out"

source events: file {
  path   = "${env:PIPE_IN}"
  follow = true
  poll   = 20ms
}

transform big: filter {
  where amount > 50
}

transform shape: map {
  customer := user
  region   := "EU"
  drop user
}

sink out: file {
  path     = "${env:PIPE_OUT}"
  format   = protobuf
  schema   = Out
  delivery = exactly_once
}

events -> big -> shape -> out
`

// TestKillProtobuf is TestKill with the sink writing format = protobuf:
// SIGKILLed at random moments and restarted, pipe run must leave every
// record in the length-delimited output exactly once, in order, and the
// file whole (no frame cut short).
func TestKillProtobuf(t *testing.T) {
	records, kills := proctest.KillTest(t, 100000, 12)
	dir := t.TempDir()
	proto := filepath.Join(dir, "out.proto")
	pipe := filepath.Join(dir, "file_map_protobuf.pipe")
	if err := os.WriteFile(proto, []byte(outProto), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pipe, []byte(protobufPipe), 0o644); err != nil {
		t.Fatal(err)
	}
	typ, err := protobuf.Compile(proto, "killtest.Out", nil)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := protobuf.NewCodec(typ)
	if err != nil {
		t.Fatal(err)
	}
	input, want := generate(t, records, 11)
	t.Logf("%d input records, %d expected output records", records, len(want))
	in := emptyFile(t, filepath.Join(dir, "in.jsonl"))
	out := filepath.Join(dir, "out", "out.pb")
	// read decodes the output; cut reports a frame cut short at the end.
	read := func() (recs []string, cut bool, err error) {
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, false, nil
		}
		for len(data) > 0 {
			n, k := binary.Uvarint(data)
			if k <= 0 || uint64(len(data)-k) < n {
				return recs, true, nil
			}
			m, err := codec.Decode(data[k : k+int(n)])
			if err != nil {
				return nil, false, fmt.Errorf("record %d: %v", len(recs)+1, err)
			}
			b, _ := json.Marshal(m)
			recs = append(recs, string(b))
			data = data[k+int(n):]
		}
		return recs, false, nil
	}
	count := func() int { recs, _, _ := read(); return len(recs) }
	k := &proctest.Kill{
		Bin: proctest.BuildPipe(t), File: pipe, State: filepath.Join(dir, "state"),
		Dir: dir, Env: []string{"PIPE_IN=" + in, "PIPE_OUT=" + out}, Name: "file", Kills: kills,
		Life:     func() time.Duration { return time.Duration(200+rand.IntN(700)) * time.Millisecond },
		Progress: func() string { return fmt.Sprintf("%d records out", count()) },
		Complete: func(t *testing.T) {
			for deadline := time.Now().Add(2 * time.Minute); count() < len(want); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the last run wrote %d of %d records in 2 minutes", count(), len(want))
				}
			}
		},
		Check: func(t *testing.T) proctest.Tallied {
			got, cut, err := read()
			if err != nil {
				t.Fatal(err)
			}
			if cut {
				t.Errorf("%s ends with a message cut short", out)
			}
			return compare(t, got, want)
		},
	}
	k.Produce = func() error {
		return feed(in, input, 4*kills, time.Duration(kills)*600*time.Millisecond, nil)
	}
	k.Run(t)
}
