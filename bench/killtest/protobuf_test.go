package killtest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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

// protobufEdits make examples/bench/file_map_file.pipe write
// length-delimited Protobuf messages instead of JSON lines.
var protobufEdits = []string{
	"source events: file {", "schema Out from \"out.proto#killtest.Out\"\n\nsource events: file {",
	"  format   = json\n", "  format   = protobuf\n  schema   = Out\n",
}

// TestKillProtobuf is TestKill with the sink writing format = protobuf:
// SIGKILLed at random moments and restarted, pipe run must leave every
// record in the length-delimited output exactly once, in order, and the
// file whole (no frame cut short).
func TestKillProtobuf(t *testing.T) {
	records, kills := proctest.KillTest(t, 100000, 12)
	dir := t.TempDir()
	proto := writeFile(t, filepath.Join(dir, "out.proto"), []byte(outProto))
	pipe := benchPipe(t, dir, "file_map_protobuf.pipe", protobufEdits...)
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
	in := writeFile(t, filepath.Join(dir, "in.jsonl"), nil)
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
	frames := output{
		path:  out,
		count: func() int { recs, _, _ := read(); return len(recs) },
		records: func(t *testing.T) []string {
			got, cut, err := read()
			if err != nil {
				t.Fatal(err)
			}
			if cut {
				t.Errorf("%s ends with a message cut short", out)
			}
			return got
		},
	}
	k := killRound(t, dir, pipe, in, frames, kills, want, true)
	k.Produce = func() error { return feed(in, lineChunks(input, 4*kills), nil) }
	k.Run(t)
}
