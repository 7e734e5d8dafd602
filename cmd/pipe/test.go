package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"pipe.dev/pipe/exec/testrun"
)

// fileResults holds one file's test results.
type fileResults struct {
	File    string
	Results []*testrun.Result
}

func cmdTest(e *env, args []string) int {
	fs := newFlags(e, "test", "[FILES|DIRS|DIR/...]", `Run the inline tests of .pipe files on the real executor, hermetically: given records
replace the sources, captures replace the sinks, the clock is pinned, no network or
secrets are needed. Exit 1 when any test fails. With --generate N, feed N random
records per typed source through each pipeline and report records that make a stage
fail or reach a sink not matching its declared schema.`)
	runRx := fs.String("run", "", "run only tests whose name matches this regular expression")
	format := fs.String("format", "text", "output format: text, json or junit")
	generate := fs.Int("generate", 0, "instead of the inline tests, feed N random records per typed source")
	seed := fs.Uint64("seed", 1, "seed of --generate")
	parallel := fs.Int("parallel", 4, "tests run at once")
	timeout := fs.Duration("timeout", time.Minute, "time limit of one test")
	verbose := fs.BoolP("verbose", "v", false, "list passing tests too")
	if code, ok := parseFlags(fs, args, anyArgs); !ok {
		return code
	}
	if !validFormat(*format, []string{"text", "json", "junit"}) {
		return e.fail(exitUsage, "unknown --format %q (want text, json or junit)", *format)
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}
	files, err := expandArgs(paths)
	if err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	opts := &testrun.Options{Parallel: *parallel, Timeout: *timeout}
	if *runRx != "" {
		rx, err := regexp.Compile(*runRx)
		if err != nil {
			return e.fail(exitUsage, "--run: %v", err)
		}
		opts.Match = rx
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *generate > 0 {
		return generateFiles(ctx, e, files, *generate, *seed, opts)
	}

	var all []fileResults
	code := exitOK
	for _, f := range files {
		p, c := compilePlan(e, f, "text", true)
		if p == nil {
			code = max(code, c)
			continue
		}
		if len(p.Tests) == 0 {
			continue
		}
		all = append(all, fileResults{File: f, Results: testrun.Run(ctx, p, opts)})
	}
	passed, failed := 0, 0
	for _, fr := range all {
		for _, r := range fr.Results {
			if r.Passed() {
				passed++
			} else {
				failed++
			}
		}
	}
	switch *format {
	case "json":
		writeTestJSON(e.stdout, all)
	case "junit":
		writeJUnit(e.stdout, all)
	default:
		writeTestText(e.stdout, all, *verbose)
		fmt.Fprintf(e.stdout, "%d passed, %d failed\n", passed, failed)
	}
	if failed > 0 {
		code = max(code, exitFindings)
	}
	return code
}

func writeTestText(w io.Writer, all []fileResults, verbose bool) {
	for _, fr := range all {
		for _, r := range fr.Results {
			at := fmt.Sprintf("%s:%d", r.Span.File, r.Span.Start.Line)
			if r.Passed() {
				if verbose {
					fmt.Fprintf(w, "--- PASS: %s (%s, %s)\n", r.Test, at, r.Duration.Round(time.Millisecond))
				}
				continue
			}
			fmt.Fprintf(w, "--- FAIL: %s (%s, %s)\n", r.Test, at, r.Duration.Round(time.Millisecond))
			if r.Err != nil {
				fmt.Fprintf(w, "    %s: %v\n", at, r.Err)
			}
			for _, f := range r.Failures {
				fmt.Fprintf(w, "    %s:%d: %s\n", f.Span.File, f.Span.Start.Line, f.Message)
				if f.Diff != "" {
					for _, line := range strings.Split(strings.TrimRight(f.Diff, "\n"), "\n") {
						fmt.Fprintf(w, "        %s\n", line)
					}
				}
			}
		}
	}
}

type jsonTest struct {
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Name     string        `json:"name"`
	Passed   bool          `json:"passed"`
	Error    string        `json:"error,omitempty"`
	Failures []jsonFailure `json:"failures,omitempty"`
	Seconds  float64       `json:"seconds"`
}

type jsonFailure struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Target  string `json:"target"`
	Message string `json:"message"`
	Diff    string `json:"diff,omitempty"`
}

func writeTestJSON(w io.Writer, all []fileResults) {
	out := struct {
		Version int        `json:"version"`
		Tests   []jsonTest `json:"tests"`
	}{Version: 1, Tests: []jsonTest{}}
	for _, fr := range all {
		for _, r := range fr.Results {
			jt := jsonTest{File: r.Span.File, Line: r.Span.Start.Line, Name: r.Test, Passed: r.Passed(), Seconds: r.Duration.Seconds()}
			if r.Err != nil {
				jt.Error = r.Err.Error()
			}
			for _, f := range r.Failures {
				jt.Failures = append(jt.Failures, jsonFailure{File: f.Span.File, Line: f.Span.Start.Line, Target: f.Target, Message: f.Message, Diff: f.Diff})
			}
			out.Tests = append(out.Tests, jt)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr"`
	Line      int           `xml:"line,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

func writeJUnit(w io.Writer, all []fileResults) {
	var out junitSuites
	for _, fr := range all {
		s := junitSuite{Name: fr.File}
		var total time.Duration
		for _, r := range fr.Results {
			total += r.Duration
			c := junitCase{Name: r.Test, Classname: fr.File, File: r.Span.File, Line: r.Span.Start.Line,
				Time: fmt.Sprintf("%.3f", r.Duration.Seconds())}
			if r.Err != nil {
				s.Errors++
				c.Error = &junitMessage{Message: r.Err.Error()}
			} else if len(r.Failures) > 0 {
				s.Failures++
				var b strings.Builder
				for _, f := range r.Failures {
					fmt.Fprintf(&b, "%s:%d: %s\n%s", f.Span.File, f.Span.Start.Line, f.Message, f.Diff)
				}
				c.Failure = &junitMessage{Message: r.Failures[0].Message, Body: b.String()}
			}
			s.Tests++
			s.Cases = append(s.Cases, c)
		}
		s.Time = fmt.Sprintf("%.3f", total.Seconds())
		out.Suites = append(out.Suites, s)
	}
	io.WriteString(w, xml.Header)
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	enc.Encode(out)
	io.WriteString(w, "\n")
}

func generateFiles(ctx context.Context, e *env, files []string, n int, seed uint64, opts *testrun.Options) int {
	code := exitOK
	problems := 0
	for _, f := range files {
		p, c := compilePlan(e, f, "text", true)
		if p == nil {
			code = max(code, c)
			continue
		}
		found, err := testrun.Generate(ctx, p, n, seed, opts)
		if errors.Is(err, testrun.ErrNoSchema) {
			fmt.Fprintf(e.stdout, "%s: skipped: %v\n", f, err)
			continue
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "pipe: %s: %v\n", f, err)
			code = max(code, exitFindings)
			continue
		}
		for _, pr := range found {
			rec, _ := json.Marshal(pr.Record)
			fmt.Fprintf(e.stdout, "%s: stage %q: %s\n    record: %s\n", f, pr.Stage, pr.Message, rec)
		}
		problems += len(found)
		fmt.Fprintf(e.stdout, "%s: %d random records per source, %d problems\n", f, n, len(found))
	}
	if problems > 0 {
		code = max(code, exitFindings)
	}
	return code
}
