package spec

import (
	"bytes"
	"cmp"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/all"
)

var update = flag.Bool("update", false, "rewrite the want (and plan.json) sections of conformance archives from the compiler's output")

// mainFile is the file of an archive that is compiled; the others are
// importable from it.
const mainFile = "main.pipe"

// Sections of an archive that are not source files.
const (
	wantSection = "want"
	planSection = "plan.json"
	skipSection = "skip"
	// flagsSection holds options of the run, one a line; require-tests
	// adds the PIPE480 lint (compiler.Untested), as pipe lint
	// --require-tests does.
	flagsSection = "flags"
)

// conformanceCase is one parsed archive.
type conformanceCase struct {
	path    string
	archive *txtar.Archive
	files   map[string][]byte // source files by name
	want    []string          // expected diagnostics, formatted by diagLine
	hasWant bool
	plan    []byte // expected plan (hasPlan)
	hasPlan bool
	skip    string // reason to skip, or ""
	flags   map[string]bool
}

func loadCase(path string) (*conformanceCase, error) {
	a, err := txtar.ParseFile(path)
	if err != nil {
		return nil, err
	}
	c := &conformanceCase{path: path, archive: a, files: map[string][]byte{}, flags: map[string]bool{}}
	for _, f := range a.Files {
		switch f.Name {
		case wantSection:
			c.hasWant = true
			for _, line := range strings.Split(string(f.Data), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					c.want = append(c.want, line)
				}
			}
		case planSection:
			c.plan, c.hasPlan = f.Data, true
		case flagsSection:
			for _, f := range strings.Fields(string(f.Data)) {
				if f != "require-tests" {
					return nil, fmt.Errorf("%s: unknown flag %q", path, f)
				}
				c.flags[f] = true
			}
		case skipSection:
			c.skip = strings.TrimSpace(string(f.Data))
			if c.skip == "" {
				return nil, fmt.Errorf("%s: empty skip section: name the missing check", path)
			}
		default:
			if _, dup := c.files[f.Name]; dup {
				return nil, fmt.Errorf("%s: file %q appears twice", path, f.Name)
			}
			c.files[f.Name] = f.Data
		}
	}
	if _, ok := c.files[mainFile]; !ok {
		return nil, fmt.Errorf("%s: no %s section", path, mainFile)
	}
	if !c.hasWant {
		return nil, fmt.Errorf("%s: no want section", path)
	}
	return c, nil
}

// compileDir writes files into a fresh directory and compiles main.pipe
// there with the full component registry. File names in spans are
// relative to the directory, so they read as in the archive.
func compileDir(t *testing.T, files map[string][]byte) (*compiler.Program, lang.Diagnostics) {
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &compiler.Config{
		Registry: stdlib.Default,
		ReadFile: func(path string) ([]byte, error) {
			if filepath.IsAbs(path) {
				return os.ReadFile(path)
			}
			return os.ReadFile(filepath.Join(dir, path))
		},
	}
	return compiler.Compile(cfg, mainFile, files[mainFile])
}

// diagLine formats d as "PIPE104 3:9-3:13", prefixed with the file name
// ("lib/x.pipe:PIPE104 3:9-3:13") when d is not in main.pipe.
func diagLine(d lang.Diagnostic) string {
	s := fmt.Sprintf("%s %d:%d-%d:%d", d.Code, d.Span.Start.Line, d.Span.Start.Column, d.Span.End.Line, d.Span.End.Column)
	if f := filepath.ToSlash(d.Span.File); f != "" && f != mainFile {
		s = f + ":" + s
	}
	return s
}

// checkInvariants reports diagnostics that break rules every diagnostic
// obeys: a known code, lints and only lints are warnings, a valid span in
// a file of the case, a lower-case message without a final period, and
// never an internal error.
func checkInvariants(t *testing.T, ds lang.Diagnostics, files map[string][]byte) {
	for _, d := range ds {
		if d.Code == lang.Internal {
			t.Errorf("internal error: %s\n%s", d, d.Detail)
			continue
		}
		if d.Code.Name() == "" {
			t.Errorf("%s: code %s is not in lang/codes.go", d, d.Code)
		}
		wantSev := lang.Error
		if d.Code.IsLint() {
			wantSev = lang.Warning
		}
		if d.Severity != wantSev {
			t.Errorf("%s: severity %s does not match the code's kind (lints are warnings, the rest errors)", d, d.Severity)
		}
		src, ok := files[filepath.ToSlash(d.Span.File)]
		switch {
		case !ok:
			t.Errorf("%s: span file %q is not a file of the case", d, d.Span.File)
		case !d.Span.IsValid():
			t.Errorf("%s: no position", d)
		case d.Span.End.Offset < d.Span.Start.Offset || d.Span.End.Offset > len(src):
			t.Errorf("%s: span [%d, %d) outside the file (%d bytes)", d, d.Span.Start.Offset, d.Span.End.Offset, len(src))
		default:
			lines := lang.NewLines(d.Span.File, src)
			if p := lines.Pos(d.Span.Start.Offset); p != d.Span.Start {
				t.Errorf("%s: start %+v disagrees with its offset (%+v)", d, d.Span.Start, p)
			}
			if p := lines.Pos(d.Span.End.Offset); p != d.Span.End {
				t.Errorf("%s: end %+v disagrees with its offset (%+v)", d, d.Span.End, p)
			}
		}
		if !wellFormedMessage(d.Message) {
			t.Errorf("%s: message must be lower-case with no final period", d)
		}
	}
}

// wellFormedMessage reports whether m starts lower-case (or with an
// acronym such as TLS or a quoted name) and has no final period.
func wellFormedMessage(m string) bool {
	if m == "" || strings.HasSuffix(m, ".") {
		return false
	}
	first, _, _ := strings.Cut(m, " ")
	return strings.ToLower(m[:1]) == m[:1] || (len(first) > 1 && strings.ToUpper(first) == first)
}

// sortLines orders formatted diagnostics by file (main.pipe first), line,
// column, then code.
func sortLines(lines []string) {
	type key struct {
		file      string
		line, col int
		rest      string
	}
	parse := func(s string) key {
		var k key
		body := s
		if i := strings.Index(s, ":PIPE"); i >= 0 {
			k.file, body = s[:i], s[i+1:]
		}
		var code string
		var el, ec int
		fmt.Sscanf(body, "%s %d:%d-%d:%d", &code, &k.line, &k.col, &el, &ec)
		k.rest = body
		return k
	}
	slices.SortStableFunc(lines, func(a, b string) int {
		ka, kb := parse(a), parse(b)
		return cmp.Or(cmp.Compare(ka.file, kb.file), cmp.Compare(ka.line, kb.line),
			cmp.Compare(ka.col, kb.col), cmp.Compare(ka.rest, kb.rest))
	})
}

func caseFiles(t *testing.T) []string {
	paths, err := filepath.Glob(filepath.Join("conformance", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no conformance cases in conformance/")
	}
	slices.Sort(paths)
	return paths
}

func TestConformance(t *testing.T) {
	for _, path := range caseFiles(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".txtar")
		t.Run(name, func(t *testing.T) {
			c, err := loadCase(path)
			if err != nil {
				t.Fatal(err)
			}
			prog, ds := compileDir(t, c.files)
			if c.flags["require-tests"] {
				ds = append(ds, compiler.Untested(prog)...)
				ds.Sort()
			}
			checkInvariants(t, ds, c.files)
			got := make([]string, len(ds))
			for i, d := range ds {
				got[i] = diagLine(d)
			}
			sortLines(got)
			want := slices.Clone(c.want)
			sortLines(want)
			if c.skip != "" {
				if slices.Equal(got, want) {
					t.Skipf("compiler lacked a check (%s), but the case now passes: remove its skip section", c.skip)
				}
				t.Skipf("compiler lacks a check: %s", c.skip)
			}
			if (prog == nil) != ds.HasErrors() {
				t.Errorf("program is nil: %v, but errors reported: %v", prog == nil, ds.HasErrors())
			}
			var gotPlan []byte
			if c.hasPlan && prog != nil {
				gotPlan, err = buildPlan(prog)
				if err != nil {
					t.Fatalf("building the plan: %v", err)
				}
			}
			if *update {
				writeCase(t, c, got, gotPlan)
				return
			}
			if !slices.Equal(got, want) {
				t.Errorf("diagnostics differ\n got:\n\t%s\nwant:\n\t%s\nfull output:\n%s",
					strings.Join(got, "\n\t"), strings.Join(want, "\n\t"), ds.Error())
			}
			if c.hasPlan {
				if prog == nil {
					t.Fatalf("a case with a plan.json must compile without errors:\n%s", ds.Error())
				}
				if !bytes.Equal(gotPlan, c.plan) {
					t.Errorf("plan differs from plan.json:\n%s", gotPlan)
				}
			}
		})
	}
}

// writeCase rewrites the want and plan.json sections of c.
func writeCase(t *testing.T, c *conformanceCase, got []string, plan []byte) {
	for i := range c.archive.Files {
		f := &c.archive.Files[i]
		switch f.Name {
		case wantSection:
			f.Data = nil
			if len(got) > 0 {
				f.Data = []byte(strings.Join(got, "\n") + "\n")
			}
		case planSection:
			if plan != nil {
				f.Data = plan
			}
		}
	}
	if err := os.WriteFile(c.path, txtar.Format(c.archive), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildPlan builds the plan of prog and returns its JSON form.
func buildPlan(prog *compiler.Program) ([]byte, error) {
	p, err := plan.Build(prog)
	if err != nil {
		return nil, err
	}
	return plan.Marshal(p)
}

// source is the files of a conformance case or of a pipe block of spec.md.
type source struct {
	name  string
	files map[string][]byte
}

// sources returns the conformance cases that keep accepts, then the
// blocks of spec.md whose info string is one of infos.
func sources(t *testing.T, keep func(*conformanceCase) bool, infos ...string) []source {
	var out []source
	for _, path := range caseFiles(t) {
		c, err := loadCase(path)
		if err != nil {
			t.Fatal(err)
		}
		if keep(c) {
			out = append(out, source{path, c.files})
		}
	}
	_, blocks := readSpec(t)
	for _, b := range blocks {
		if slices.Contains(infos, b.info) {
			out = append(out, source{fmt.Sprintf("spec.md:%d", b.line), map[string][]byte{mainFile: []byte(b.src)}})
		}
	}
	return out
}
