// Package gen writes the benchmark input: JSON lines of the shape
// {"id":1,"user":"u1","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}
// deterministic for a seed, and computes what the benchmark transform
// (keep amount > 50, rename user to customer, add region = "EU") makes of
// them.
package gen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

var (
	countries = []string{"NL", "DE", "FR", "BE", "US"}
	events    = []string{"purchase", "purchase", "purchase", "refund", "view"}
	epoch     = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
)

// mix is splitmix64's finaliser: a random function of (seed, i).
func mix(seed, i uint64) uint64 {
	z := seed*0x9E3779B97F4A7C15 + (i+1)*0xBF58476D1CE4E5B9
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// AppendRecord appends record number i (from 1) of the stream for seed,
// without a newline.
func AppendRecord(dst []byte, seed uint64, i int) []byte {
	r := mix(seed, uint64(i))
	cents := 100 + r%9900 // 1.00 .. 99.99
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, `,"user":"u`...)
	dst = strconv.AppendUint(dst, 1+(r>>16)%1000, 10)
	dst = append(dst, `","amount":`...)
	dst = strconv.AppendFloat(dst, float64(cents)/100, 'f', -1, 64)
	dst = append(dst, `,"country":"`...)
	dst = append(dst, countries[(r>>32)%uint64(len(countries))]...)
	dst = append(dst, `","event":"`...)
	dst = append(dst, events[(r>>40)%uint64(len(events))]...)
	dst = append(dst, `","ts":"`...)
	dst = epoch.Add(time.Duration(i)*time.Second).AppendFormat(dst, time.RFC3339)
	return append(dst, `"}`...)
}

// Record shapes of the benchmark input: the 6 fields of AppendRecord
// alone, those and 24 more flat fields (30 in all), or those and a nested
// object that brings a line to about 2 KiB.
const (
	Narrow = "narrow"
	Wide   = "wide"
	Nested = "nested"
)

// Shapes lists the record shapes Write knows.
var Shapes = []string{Narrow, Wide, Nested}

// AppendShaped appends record number i of the stream for seed in the
// given shape (one of Shapes), without a newline. Every shape starts with
// AppendRecord's six fields, so the benchmark transform applies to each.
func AppendShaped(dst []byte, shape string, seed uint64, i int) []byte {
	start := len(dst)
	dst = AppendRecord(dst, seed, i)
	switch shape {
	case Wide:
		dst = dst[:len(dst)-1] // reopen the object
		r := mix(seed^0x5A5A, uint64(i))
		for f := 7; f <= 30; f++ {
			dst = append(dst, `,"f`...)
			dst = strconv.AppendInt(dst, int64(f), 10)
			dst = append(dst, `":`...)
			v := (r >> (f % 40)) % 100000
			switch f % 4 {
			case 0:
				dst = strconv.AppendUint(dst, v, 10)
			case 1:
				dst = append(dst, `"s`...)
				dst = strconv.AppendUint(dst, v, 36)
				dst = append(dst, '"')
			case 2:
				dst = strconv.AppendFloat(dst, float64(v)/100, 'f', -1, 64)
			default:
				dst = strconv.AppendBool(dst, v%2 == 0)
			}
		}
		dst = append(dst, '}')
	case Nested:
		dst = dst[:len(dst)-1]
		r := mix(seed^0xA5A5, uint64(i))
		dst = append(dst, `,"detail":{"address":{"street":"Keizersgracht `...)
		dst = strconv.AppendUint(dst, r%999, 10)
		dst = append(dst, `","city":"Amsterdam","zip":"1015 CJ","geo":{"lat":52.37,"lon":4.89}},"items":[`...)
		for k := 0; k < 12; k++ {
			if k > 0 {
				dst = append(dst, ',')
			}
			v := (r >> (k * 4)) % 10000
			dst = append(dst, `{"sku":"SKU-`...)
			dst = strconv.AppendUint(dst, v, 10)
			dst = append(dst, `","qty":`...)
			dst = strconv.AppendUint(dst, 1+v%9, 10)
			dst = append(dst, `,"price":`...)
			dst = strconv.AppendFloat(dst, float64(v)/100, 'f', -1, 64)
			dst = append(dst, `,"tags":["gift","sale"],"ok":true}`...)
		}
		dst = append(dst, `],"note":"`...)
		for len(dst)-start < 2036 {
			dst = append(dst, "lorem ipsum "...)
		}
		dst = append(dst, `"}}`...)
	}
	return dst
}

// Write writes records 1..n of the stream for seed to w, one per line.
func Write(w io.Writer, n int, seed uint64) error { return WriteShaped(w, Narrow, n, seed) }

// WriteShaped writes records 1..n of the stream for seed in the given
// shape (one of Shapes) to w, one per line.
func WriteShaped(w io.Writer, shape string, n int, seed uint64) error {
	if !slices.Contains(Shapes, shape) {
		return fmt.Errorf("unknown shape %q (want one of %v)", shape, Shapes)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var line []byte
	for i := 1; i <= n; i++ {
		line = AppendShaped(line[:0], shape, seed, i)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Transform applies the benchmark transform to one decoded record: it
// reports false for a record the filter drops.
func Transform(m map[string]any) bool {
	amount, _ := m["amount"].(float64)
	if !(amount > 50) {
		return false
	}
	m["customer"] = m["user"]
	delete(m, "user")
	m["region"] = "EU"
	return true
}

// Canonical re-encodes one JSON line with encoding/json (sorted keys,
// numbers as float64), so that lines can be compared whatever the field
// order or number formatting of their writer.
func Canonical(line []byte) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return "", fmt.Errorf("line %q: %v", line, err)
	}
	b, err := json.Marshal(m)
	return string(b), err
}
