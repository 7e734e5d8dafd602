// Command check writes a .pipe file of N stages for benchmarking
// `pipe check`: blocks of ten stages, each with its own schema, a Kafka
// source, filters with where, maps with := and keep/drop, a route with
// ports and else, and Kafka, file and PostgreSQL sinks with a dead-letter
// topic. run.sh times `pipe check` on the generated files and writes
// RESULTS.md.
//
//	check -n 10000 -o /tmp/check-10000.pipe
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("check", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.IntP("stages", "n", 1000, fmt.Sprintf("number of stages (a multiple of %d)", blockStages))
	out := fs.StringP("output", "o", "-", "file to write (- for stdout)")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		return 2
	}
	src, err := generate(*n)
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return 2
	}
	if *out == "-" {
		_, err = stdout.Write(src)
	} else {
		err = os.WriteFile(*out, src, 0o644)
	}
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return 2
	}
	return 0
}
