package main

import (
	"os"
	"strings"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
)

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
		return e.fail(exitUsage, "unknown --format %q (want %s)", format, strings.Join(diagFormats, ", "))
	}
	files, err := expandArgs(args)
	if err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	if len(files) == 0 {
		return e.fail(exitUsage, "no .pipe files given")
	}
	var all lang.Diagnostics
	for _, f := range files {
		prog, diags, err := compileFile(f)
		if err != nil {
			return e.fail(exitUsage, "%v", err)
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
		return e.fail(exitUsage, "%v", err)
	}
	if all.HasErrors() {
		return exitFindings
	}
	return exitOK
}

func cmdCheck(e *env, args []string) int {
	fs := newFlags(e, "check", "FILES|DIRS|DIR/...", `Check .pipe files: syntax, names, types, attributes, graph, delivery guarantees.
Prints errors as file:line:col: error PIPEnnn: message. Exit 1 when any error is found.`)
	format := diagFormatFlag(fs)
	if code, ok := parseFlags(fs, args, someArgs); !ok {
		return code
	}
	return checkFiles(e, fs.Args(), *format, nil)
}

func cmdLint(e *env, args []string) int {
	fs := newFlags(e, "lint", "FILES|DIRS|DIR/...", `Check .pipe files and report lint warnings (PIPE4xx) besides errors.
Warnings do not fail the run unless denied with --deny.`)
	format := diagFormatFlag(fs)
	denyList := fs.StringSlice("deny", nil, "lint codes that fail the run (PIPE430,PIPE410) or \"all\"")
	requireTests := fs.Bool("require-tests", false, "also report every source and sink no inline test covers (PIPE480)")
	if code, ok := parseFlags(fs, args, someArgs); !ok {
		return code
	}
	opts := &lintOptions{requireTests: *requireTests}
	for _, d := range *denyList {
		if d == "all" {
			opts.denyAll = true
			continue
		}
		c, ok := lang.ParseCode(strings.ToUpper(d))
		if !ok || !c.IsLint() {
			return e.fail(exitUsage, "--deny %q is not a lint code (PIPE4xx)", d)
		}
		opts.deny = append(opts.deny, c)
	}
	return checkFiles(e, fs.Args(), *format, opts)
}

// loadPlan reads a compiled plan (a .json file) or compiles a .pipe file;
// on failure it has reported why and returns the exit code.
func loadPlan(e *env, path string) (*plan.Plan, int) {
	if !strings.HasSuffix(path, ".json") {
		return buildPlan(e, path, "text")
	}
	p, err := exec.Load(path)
	if err != nil {
		return nil, e.fail(exitUsage, "%v", err)
	}
	return p, exitOK
}

// buildPlan compiles one file into a plan, printing diagnostics on failure.
func buildPlan(e *env, path, format string) (*plan.Plan, int) {
	return compilePlan(e, path, format, false)
}

// compilePlan is buildPlan; a library (a file of schemas and defs) is an
// error, PIPE206, unless library is set: it checks clean, but holds
// nothing to run.
func compilePlan(e *env, path, format string, library bool) (*plan.Plan, int) {
	prog, diags, err := compileFile(path)
	if err != nil {
		return nil, e.fail(exitUsage, "%v", err)
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
		return nil, e.fail(exitUsage, "%v", err)
	}
	return p, exitOK
}

func cmdCompile(e *env, args []string) int {
	fs := newFlags(e, "compile", "FILE",
		"Compile a .pipe file into a task plan: deterministic, versioned JSON with secrets kept symbolic.")
	out := fs.StringP("output", "o", "-", "write the plan to this file (- for stdout)")
	format := diagFormatFlag(fs)
	if code, ok := parseFlags(fs, args, nArgs(1)); !ok {
		return code
	}
	p, code := buildPlan(e, fs.Arg(0), *format)
	if p == nil {
		return code
	}
	data, err := plan.Marshal(p)
	if err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	if *out == "-" {
		e.stdout.Write(data)
		return exitOK
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	return exitOK
}
