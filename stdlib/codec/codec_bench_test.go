package codec

import (
	"encoding/json"
	"testing"
)

// The benchmarks below measure one record of the benchmark shape. The
// comparison with JSON libraries behind the package doc is recorded in
// bench/RESULTS.md.

func BenchmarkDecodeJSON(b *testing.B) {
	c := newJSON(nil)
	line := []byte(benchLine)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := c.Decode(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJSON(b *testing.B) {
	c := newJSON(nil)
	m, _ := c.Decode([]byte(benchLine))
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = c.Append(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTripJSON is the codec's share of file→map→file.
func BenchmarkRoundTripJSON(b *testing.B) {
	dec, enc := newJSON(nil), newJSON(nil)
	line := []byte(benchLine)
	var buf []byte
	for b.Loop() {
		m, err := dec.Decode(line)
		if err != nil {
			b.Fatal(err)
		}
		m["customer"] = m["user"]
		delete(m, "user")
		m["region"] = "EU"
		if buf, err = enc.Append(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTripEncodingJSON is the same with the standard library.
func BenchmarkRoundTripEncodingJSON(b *testing.B) {
	line := []byte(benchLine)
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			b.Fatal(err)
		}
		m["customer"] = m["user"]
		delete(m, "user")
		m["region"] = "EU"
		if _, err := json.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}
