package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
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

// parseFlags parses args; it returns false and the exit code to use when
// parsing failed or help was asked for.
func parseFlags(fs *pflag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// compileFile reads and compiles one file.
func compileFile(path string) (*compiler.Program, lang.Diagnostics, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, path, src)
	return prog, diags, nil
}

// lintOptions says which warnings checkFiles reports and which fail.
type lintOptions struct {
	deny         []lang.Code
	denyAll      bool
	requireTests bool // also PIPE480 for every file that compiles
}

// checkFiles compiles every file and prints its diagnostics: errors only,
// or with lint set, warnings too under its policy. It returns the exit code.
func checkFiles(e *env, args []string, format string, lint *lintOptions) int {
	if !validFormat(format, diagFormats) {
		fmt.Fprintf(e.stderr, "pipe: unknown --format %q (want %s)\n", format, strings.Join(diagFormats, ", "))
		return exitUsage
	}
	files, err := expandArgs(args)
	if err != nil {
		fmt.Fprintf(e.stderr, "pipe: %v\n", err)
		return exitUsage
	}
	if len(files) == 0 {
		fmt.Fprintln(e.stderr, "pipe: no .pipe files given")
		return exitUsage
	}
	var all lang.Diagnostics
	for _, f := range files {
		prog, diags, err := compileFile(f)
		if err != nil {
			fmt.Fprintf(e.stderr, "pipe: %v\n", err)
			return exitUsage
		}
		switch {
		case lint == nil:
			diags = diags.Errors()
		case lint.requireTests:
			diags = append(diags, compiler.Untested(prog)...)
			fallthrough
		default:
			diags = compiler.ApplyLintPolicy(diags, lint.deny, lint.denyAll)
		}
		all = append(all, diags...)
	}
	all.Sort()
	if err := printDiagnostics(e.stdout, format, all, sources{}); err != nil {
		fmt.Fprintf(e.stderr, "pipe: %v\n", err)
		return exitUsage
	}
	if all.HasErrors() {
		return exitFindings
	}
	return exitOK
}

func cmdCheck(e *env, args []string) int {
	fs := newFlags(e, "check", "FILES|DIRS|DIR/...",
		"Check .pipe files: syntax, names, types, attributes, graph, delivery guarantees.\n"+
			"Prints errors as file:line:col: error PIPEnnn: message. Exit 1 when any error is found.")
	format := fs.String("format", "text", "diagnostics format: text, json or github")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	return checkFiles(e, fs.Args(), *format, nil)
}

func cmdLint(e *env, args []string) int {
	fs := newFlags(e, "lint", "FILES|DIRS|DIR/...",
		"Check .pipe files and report lint warnings (PIPE4xx) besides errors.\n"+
			"Warnings do not fail the run unless denied with --deny.")
	format := fs.String("format", "text", "diagnostics format: text, json or github")
	denyList := fs.StringSlice("deny", nil, "lint codes that fail the run (PIPE430,PIPE410) or \"all\"")
	requireTests := fs.Bool("require-tests", false, "also report every source and sink no inline test covers (PIPE480)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	opts := &lintOptions{requireTests: *requireTests}
	for _, d := range *denyList {
		if d == "all" {
			opts.denyAll = true
			continue
		}
		c, ok := lang.ParseCode(strings.ToUpper(d))
		if !ok || !c.IsLint() {
			fmt.Fprintf(e.stderr, "pipe: --deny %q is not a lint code (PIPE4xx)\n", d)
			return exitUsage
		}
		opts.deny = append(opts.deny, c)
	}
	return checkFiles(e, fs.Args(), *format, opts)
}

// buildPlan compiles one file into a plan, printing diagnostics on failure.
// loadPlan reads a compiled plan (a .json file) or compiles a .pipe file;
// on failure it has reported why and returns the exit code.
func loadPlan(e *env, path string) (*plan.Plan, int) {
	if !strings.HasSuffix(path, ".json") {
		return buildPlan(e, path, "text")
	}
	p, err := exec.Load(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "pipe: %v\n", err)
		return nil, exitUsage
	}
	return p, exitOK
}

func buildPlan(e *env, path, format string) (*plan.Plan, int) {
	return compilePlan(e, path, format, false)
}

// compilePlan is buildPlan; a library (a file of schemas and defs) is an
// error, PIPE206, unless library is set: it checks clean, but holds
// nothing to run.
func compilePlan(e *env, path, format string, library bool) (*plan.Plan, int) {
	prog, diags, err := compileFile(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "pipe: %v\n", err)
		return nil, exitUsage
	}
	if !library {
		diags = compiler.Runnable(prog, diags, path)
	}
	if diags.HasErrors() {
		printDiagnostics(e.stderr, format, diags.Errors(), sources{})
		return nil, exitFindings
	}
	p, err := plan.Build(prog)
	if err != nil {
		fmt.Fprintf(e.stderr, "pipe: %v\n", err)
		return nil, exitUsage
	}
	return p, exitOK
}

func cmdCompile(e *env, args []string) int {
	fs := newFlags(e, "compile", "FILE",
		"Compile a .pipe file into a task plan: deterministic, versioned JSON with secrets kept symbolic.")
	out := fs.StringP("output", "o", "-", "write the plan to this file (- for stdout)")
	format := fs.String("format", "text", "diagnostics format: text, json or github")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	p, code := buildPlan(e, fs.Arg(0), *format)
	if p == nil {
		return code
	}
	data, err := plan.Marshal(p)
	if err != nil {
		fmt.Fprintf(e.stderr, "pipe: %v\n", err)
		return exitUsage
	}
	if *out == "-" {
		e.stdout.Write(data)
		return exitOK
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintf(e.stderr, "pipe: %v\n", err)
		return exitUsage
	}
	return exitOK
}
