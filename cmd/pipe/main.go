// Command pipe checks, formats, compiles, tests and runs .pipe pipelines.
//
// The command is thin: it parses flags, calls the lang, compiler and exec
// packages, prints their results and maps them to exit codes: 0 clean,
// 1 findings (diagnostics, failed tests), 2 usage or internal failure.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"

	"pipe.dev/pipe/lang"
	_ "pipe.dev/pipe/stdlib/all" // every component, registered into stdlib.Default
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit codes.
const (
	exitOK       = 0
	exitFindings = 1
	exitUsage    = 2
)

func main() {
	os.Exit(profiled(func() int { return run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr) }))
}

// profiled runs f, writing a CPU profile of it to the file that
// PIPE_CPUPROFILE names, if any (for bench/: `go tool pprof bin/pipe FILE`).
func profiled(f func() int) int {
	path := os.Getenv("PIPE_CPUPROFILE")
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pipe: PIPE_CPUPROFILE: %v\n", err)
		return exitUsage
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintf(os.Stderr, "pipe: PIPE_CPUPROFILE: %v\n", err)
		return exitUsage
	}
	defer pprof.StopCPUProfile()
	return f()
}

// env is what a command needs from the process: its streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(e *env, args []string) int
}

func commands() []command {
	return []command{
		{"check", "check .pipe files for errors", cmdCheck},
		{"lint", "check .pipe files and report lint warnings", cmdLint},
		{"fmt", "print .pipe files in canonical form", cmdFmt},
		{"compile", "compile a .pipe file into a task plan (JSON)", cmdCompile},
		{"graph", "draw a pipeline's graph (dot, mermaid or svg)", cmdGraph},
		{"connectors", "list components with their attributes", cmdConnectors},
		{"run", "run a pipeline (.pipe file or compiled plan)", cmdRun},
		{"test", "run the inline tests of .pipe files", cmdTest},
		{"offsets", "show or change the positions a pipeline resumes from", cmdOffsets},
		{"import", "write .pipe files from Kafka Connect connector configs", cmdImport},
		{"top", "show a running pipeline live (from its --http server)", cmdTop},
		{"worker", "run a worker of a cluster that shares many pipelines", cmdWorker},
		{"deploy", "deploy a pipeline to a cluster", cmdDeploy},
		{"status", "show the pipelines of a cluster", cmdStatus},
		{"undeploy", "remove a pipeline from a cluster", cmdUndeploy},
		{"pause", "pause a pipeline of a cluster", cmdPause},
		{"resume", "resume a paused pipeline of a cluster", cmdResume},
		{"broker", "run an embedded Kafka-protocol broker for development", cmdBroker},
		{"schema", "work with schemas: pull a registry subject into files (schema pull)", cmdSchema},
		{"version", "print the version", cmdVersion},
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "pipe: internal error: %v\n", r)
			code = exitUsage
		}
	}()
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, stdin, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	case "-v", "--version":
		return cmdVersion(e, nil)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(stderr, "pipe: unknown command %q%s\n", args[0], suggestCommand(args[0]))
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "pipe moves data between Kafka and other systems, from pipelines written in .pipe files.")
	fmt.Fprintln(w, "\nUsage:\n  pipe <command> [flags] [arguments]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pipe <command> --help' for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 clean, 1 findings, 2 usage or internal error.")
}

func suggestCommand(name string) string {
	best, bestD := "", 3
	for _, c := range commands() {
		if d := lang.EditDistance(name, c.name); d < bestD {
			best, bestD = c.name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func cmdVersion(e *env, args []string) int {
	fmt.Fprintf(e.stdout, "pipe %s\n", version)
	return exitOK
}

// expandFiles turns the arguments into .pipe files: directories are walked
// for *.pipe files (sorted); files are kept as given.
func expandFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = walkPipeFiles(a, func(p string) { found = append(found, p) })
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}
