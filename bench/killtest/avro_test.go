package killtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/avro"
)

// avroEdits make examples/bench/file_map_file.pipe read an Avro object
// container file.
var avroEdits = []string{
	"source events: file {", `schema Event {
  id:      int
  user:    string
  amount:  float
  country: string
  event:   string
  ts:      string
}

source events: file {`,
	"  format = json\n", "  format = avro\n  schema = Event\n  batch  = 100\n",
}

// TestKillAvroSource is the crash test of the file source reading Avro:
// blocks of 37 records are appended to a container file while pipe run,
// following it, is SIGKILLed and restarted; its positions point inside
// blocks, so the exactly-once output must hold every record once, in
// order.
func TestKillAvroSource(t *testing.T) {
	records, kills := proctest.KillTest(t, 100000, 12)
	dir := t.TempDir()
	pipe := benchPipe(t, dir, "avro_map_file.pipe", avroEdits...)
	input, want := generate(t, records, 13)
	t.Logf("%d input records, %d expected output records", records, len(want))
	typ := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType}, &types.Field{Name: "user", Type: types.StringType},
		&types.Field{Name: "amount", Type: types.FloatType}, &types.Field{Name: "country", Type: types.StringType},
		&types.Field{Name: "event", Type: types.StringType}, &types.Field{Name: "ts", Type: types.StringType},
	)
	typ.Name = "Event"
	w, err := avro.NewWriter(typ)
	if err != nil {
		t.Fatal(err)
	}
	// The blocks to append, 37 records each.
	var blocks [][]byte
	var body []byte
	count := 0
	sc := bufio.NewScanner(bytes.NewReader(input))
	for sc.Scan() {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		id, _ := m["id"].(json.Number).Int64()
		amount, _ := m["amount"].(json.Number).Float64()
		m["id"], m["amount"] = id, amount
		if body, err = w.Append(body, m); err != nil {
			t.Fatal(err)
		}
		if count++; count == 37 {
			blocks = append(blocks, w.Block(nil, count, body))
			body, count = body[:0], 0
		}
	}
	if count > 0 {
		blocks = append(blocks, w.Block(nil, count, body))
	}
	header, err := w.Header(nil)
	if err != nil {
		t.Fatal(err)
	}
	in := writeFile(t, filepath.Join(dir, "in.avro"), header)
	k := killRound(t, dir, pipe, in, jsonLines(filepath.Join(dir, "out", "out.jsonl")), kills, want, true)
	k.Produce = func() error { return feed(in, joinChunks(blocks, 4*kills), nil) }
	k.Run(t)
}

// joinChunks joins parts into at most n chunks, in order.
func joinChunks(parts [][]byte, n int) [][]byte {
	var chunks [][]byte
	per := len(parts)/n + 1
	for len(parts) > 0 {
		m := min(per, len(parts))
		chunks = append(chunks, bytes.Join(parts[:m], nil))
		parts = parts[m:]
	}
	return chunks
}
