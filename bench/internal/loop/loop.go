// Package loop is the command-line frame the hand-written baselines of
// bench/ share (bench/baseline, bench/tuned): -i and -o files, standard
// streams by default, the count of records written on standard error.
// Each baseline keeps only its transform.
package loop

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

// Transform reads records from r and writes what it keeps to w, returning
// how many it wrote.
type Transform func(r io.Reader, w io.Writer) (int, error)

// Main is the main function of the baseline name: Run on the process's
// arguments and standard streams, exiting with its code.
func Main(name string, transform Transform) {
	os.Exit(Run(name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, transform))
}

// Run parses args (-i/--input, -o/--output, "-" for the standard streams),
// runs transform and returns the exit code.
func Run(name string, args []string, stdin io.Reader, stdout, stderr io.Writer, transform Transform) int {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
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
			fmt.Fprintln(stderr, name+":", err)
			return 1
		}
		defer f.Close()
		r = f
	}
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(stderr, name+":", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	n, err := transform(r, w)
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	fmt.Fprintf(stderr, "%s: %d records written\n", name, n)
	return 0
}
