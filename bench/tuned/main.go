// Command tuned is the second baseline the benchmark pipelines are
// measured against: the loop a performance-minded Go programmer would
// write for the job of examples/bench/file_map_file.pipe (keep amount > 50,
// rename user to customer, add region = "EU", fields in key order), on one
// goroutine, with github.com/valyala/fastjson parsing each line into a
// reused parser, no maps, and the output bytes appended into one reused
// buffer. Numbers are copied as they are written in the input (pipe writes
// them in Go's shortest form, which the benchmark input already uses);
// bench/run.sh checks that its output equals pipe's.
//
//	go run ./bench/tuned -i in.jsonl -o out.jsonl
package main

import (
	"bufio"
	"io"

	"github.com/valyala/fastjson"

	"pipe.dev/pipe/bench/internal/loop"
)

func main() { loop.Main("tuned", transform) }

// field is one output field: its name and its value in the parsed line.
type field struct {
	key string
	val *fastjson.Value
}

var eu = fastjson.MustParse(`"EU"`)

// transform is the loop being measured.
func transform(r io.Reader, w io.Writer) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	var p fastjson.Parser
	fields := make([]field, 0, 16)
	buf := make([]byte, 0, 1<<20)
	n := 0
	for sc.Scan() {
		v, err := p.ParseBytes(sc.Bytes())
		if err != nil {
			return n, err
		}
		o, err := v.Object()
		if err != nil {
			return n, err
		}
		amount := o.Get("amount")
		if amount == nil || amount.Type() != fastjson.TypeNumber || !(amount.GetFloat64() > 50) {
			continue
		}
		fields = fields[:0]
		o.Visit(func(k []byte, v *fastjson.Value) {
			if string(k) == "user" {
				fields = append(fields, field{"customer", v})
			} else if string(k) != "region" {
				fields = append(fields, field{string(k), v})
			}
		})
		fields = append(fields, field{"region", eu})
		// Insertion sort: a handful of fields, mostly in order already.
		for i := 1; i < len(fields); i++ {
			for j := i; j > 0 && fields[j].key < fields[j-1].key; j-- {
				fields[j], fields[j-1] = fields[j-1], fields[j]
			}
		}
		buf = append(buf, '{')
		for i, f := range fields {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '"')
			buf = append(buf, f.key...)
			buf = append(buf, '"', ':')
			buf = f.val.MarshalTo(buf)
		}
		buf = append(buf, '}', '\n')
		n++
		if len(buf) >= 1<<20-4096 {
			if _, err := w.Write(buf); err != nil {
				return n, err
			}
			buf = buf[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	_, err := w.Write(buf)
	return n, err
}
