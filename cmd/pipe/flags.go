package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"
)

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(e *env, name, argsUsage, summary string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: pipe %s [flags] %s\n\n%s\n\nFlags:\n", name, argsUsage, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and asks argsOK whether the arguments left fit
// (by their number; it may look at the parsed flags too). It returns false
// and the exit code to use when parsing failed, help was asked for, or the
// arguments do not fit (then it has printed the usage).
func parseFlags(fs *pflag.FlagSet, args []string, argsOK func(n int) bool) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return exitOK, false
		}
		return exitUsage, false
	}
	if !argsOK(fs.NArg()) {
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

// nArgs is an argsOK of parseFlags: exactly want arguments.
func nArgs(want int) func(int) bool {
	return func(n int) bool { return n == want }
}

// someArgs is an argsOK of parseFlags: at least one argument.
func someArgs(n int) bool { return n > 0 }

// anyArgs is an argsOK of parseFlags: any number of arguments.
func anyArgs(int) bool { return true }

// fail prints "pipe: " and the message on standard error and returns code.
func (e *env) fail(code int, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "pipe: "+format+"\n", args...)
	return code
}

// diagFormatFlag adds --format, the format of diagnostics (checked by
// printDiagnostics' callers against diagFormats).
func diagFormatFlag(fs *pflag.FlagSet) *string {
	return fs.String("format", "text", "diagnostics format: text, json or github")
}

// clusterFlag adds --cluster, the URL of a worker of the cluster to talk to.
func clusterFlag(fs *pflag.FlagSet) *string {
	return fs.String("cluster", "", "URL of any worker of the cluster, http://host:port (required)")
}

// logFlags are --log-format and --log-level.
type logFlags struct{ format, level *string }

func addLogFlags(fs *pflag.FlagSet) logFlags {
	return logFlags{
		format: fs.String("log-format", "text", "log format: text or json"),
		level:  fs.String("log-level", "info", "log level: debug, info, warn or error"),
	}
}

// logger returns the logger the flags ask for, writing to w.
func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*f.level)); err != nil {
		return nil, fmt.Errorf("unknown --log-level %q", *f.level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch *f.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown --log-format %q (want text or json)", *f.format)
}
