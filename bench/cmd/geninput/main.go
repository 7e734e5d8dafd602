// Command geninput writes the benchmark input: n JSON lines of the shape
// {"id":1,"user":"u1","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}.
//
//	go run ./bench/cmd/geninput -n 1000000 -o /tmp/in.jsonl
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"pipe.dev/pipe/bench/gen"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("geninput", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.IntP("records", "n", 1000000, "number of records")
	out := fs.StringP("output", "o", "-", "output file (- for standard output)")
	seed := fs.Uint64("seed", 1, "random seed")
	shape := fs.String("shape", gen.Narrow, "record shape: narrow (6 fields), wide (30 fields) or nested (about 2 KiB)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(stderr, "geninput:", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	if err := gen.WriteShaped(w, *shape, *n, *seed); err != nil {
		fmt.Fprintln(stderr, "geninput:", err)
		return 1
	}
	return 0
}
