package killtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/avro"
)

// avroPipe is examples/bench/file_map_file.pipe reading an Avro object
// container file, followed while blocks are appended to it.
const avroPipe = `pipeline avro_map_file {
  delivery   = exactly_once
  checkpoint = 200ms
}

schema Event {
  id:      int
  user:    string
  amount:  float
  country: string
  event:   string
  ts:      string
}

source events: file {
  path   = "${env:PIPE_IN}"
  format = avro
  schema = Event
  follow = true
  poll   = 20ms
  batch  = 100
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
  format   = json
  delivery = exactly_once
}

events -> big -> shape -> out
`

// TestKillAvroSource is the crash test of the file source reading Avro:
// blocks of 37 records are appended to a container file while pipe run,
// following it, is SIGKILLed and restarted; its positions point inside
// blocks, so the exactly-once output must hold every record once, in
// order.
func TestKillAvroSource(t *testing.T) {
	records, kills := proctest.KillTest(t, 100000, 12)
	dir := t.TempDir()
	pipe := filepath.Join(dir, "avro_map_file.pipe")
	if err := os.WriteFile(pipe, []byte(avroPipe), 0o644); err != nil {
		t.Fatal(err)
	}
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
	in := filepath.Join(dir, "in.avro")
	header, err := w.Header(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, header, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "out.jsonl")
	k := &proctest.Kill{
		Bin: proctest.BuildPipe(t), File: pipe, State: filepath.Join(dir, "state"),
		Dir: dir, Env: []string{"PIPE_IN=" + in, "PIPE_OUT=" + out}, Name: "file", Kills: kills,
		Life:     func() time.Duration { return time.Duration(200+rand.IntN(700)) * time.Millisecond },
		Progress: func() string { return fmt.Sprintf("%d records out", countLines(out)) },
		Complete: func(t *testing.T) {
			for deadline := time.Now().Add(2 * time.Minute); countLines(out) < len(want); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the last run wrote %d of %d records in 2 minutes", countLines(out), len(want))
				}
			}
		},
		Check: func(t *testing.T) proctest.Tallied { return compare(t, readCanonical(t, out), want) },
	}
	k.Produce = func() error {
		f, err := os.OpenFile(in, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		n := 4 * kills
		per := len(blocks)/n + 1
		for len(blocks) > 0 {
			m := min(per, len(blocks))
			for _, b := range blocks[:m] {
				if _, err := f.Write(b); err != nil {
					return err
				}
			}
			blocks = blocks[m:]
			time.Sleep(time.Duration(kills) * 600 * time.Millisecond / time.Duration(n))
		}
		return nil
	}
	k.Run(t)
}
