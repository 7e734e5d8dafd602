// Command baseline is the plain Go loop the benchmark pipelines are
// measured against: bufio + encoding/json + map[string]any doing the
// benchmark transform (keep amount > 50, rename user to customer, add
// region = "EU") from a JSON lines input to a JSON lines output.
//
//	go run ./bench/baseline -i in.jsonl -o out.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"io"

	"pipe.dev/pipe/bench/internal/loop"
)

func main() { loop.Main("baseline", transform) }

// transform is the loop being measured.
func transform(r io.Reader, w io.Writer) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	bw := bufio.NewWriterSize(w, 1<<20)
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return n, err
		}
		if amount, _ := m["amount"].(float64); !(amount > 50) {
			continue
		}
		m["customer"] = m["user"]
		delete(m, "user")
		m["region"] = "EU"
		b, err := json.Marshal(m)
		if err != nil {
			return n, err
		}
		bw.Write(b)
		bw.WriteByte('\n')
		n++
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	return n, bw.Flush()
}
