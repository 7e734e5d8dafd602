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
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("baseline", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.StringP("input", "i", "-", "input file (- for standard input)")
	out := fs.StringP("output", "o", "-", "output file (- for standard output)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r, w := stdin, stdout
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(stderr, "baseline:", err)
			return 1
		}
		defer f.Close()
		r = f
	}
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(stderr, "baseline:", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	n, err := transform(r, w)
	if err != nil {
		fmt.Fprintln(stderr, "baseline:", err)
		return 1
	}
	fmt.Fprintf(stderr, "baseline: %d records written\n", n)
	return 0
}

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
