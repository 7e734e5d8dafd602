package spec

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/fn"
)

// block is one fenced code block of spec.md.
type block struct {
	info string // the fence's info string: pipe, pipe-error, ...
	line int    // line of the opening fence
	src  string
}

func readSpec(t *testing.T) (string, []block) {
	data, err := os.ReadFile("spec.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []block
	var cur *block
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &block{info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), line: n}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.src += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("spec.md:%d: code block never closed", cur.line)
	}
	return string(data), blocks
}

// TestSpecBlocks compiles every pipe block of spec.md: a ```pipe block must
// compile with no diagnostic at all, a ```pipe-error block must report at
// least one error.
func TestSpecBlocks(t *testing.T) {
	_, blocks := readSpec(t)
	n := 0
	for _, b := range blocks {
		if b.info != "pipe" && b.info != "pipe-error" {
			continue
		}
		n++
		t.Run(fmt.Sprintf("line%d", b.line), func(t *testing.T) {
			name := fmt.Sprintf("spec_line%d.pipe", b.line)
			prog, ds := compileDir(t, map[string][]byte{mainFile: []byte(b.src)})
			for _, d := range ds {
				if d.Code == lang.Internal {
					t.Errorf("internal error: %s\n%s", d, d.Detail)
				}
			}
			switch b.info {
			case "pipe":
				if len(ds) > 0 || prog == nil {
					t.Errorf("spec.md:%d: a ```pipe block must compile clean (%s):\n%s", b.line, name, ds.Error())
				}
			case "pipe-error":
				if !ds.HasErrors() {
					t.Errorf("spec.md:%d: a ```pipe-error block must report an error; got:\n%s", b.line, ds.Error())
				}
			}
		})
	}
	if n < 5 {
		t.Fatalf("found only %d pipe blocks in spec.md", n)
	}
}

var codeRow = regexp.MustCompile("^\\| (PIPE\\d{3}) \\| `([a-z0-9-]+)` \\|")

// TestSpecCodeTable checks that the code tables of spec.md list every code
// of lang/codes.go once, with its name, errors under "Errors" and lints
// under "Lints".
func TestSpecCodeTable(t *testing.T) {
	text, _ := readSpec(t)
	seen := map[lang.Code]bool{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "### 15.1"):
			section = "errors"
		case strings.HasPrefix(line, "### 15.2"):
			section = "lints"
		case strings.HasPrefix(line, "## 16"):
			section = ""
		}
		m := codeRow.FindStringSubmatch(line)
		if m == nil || section == "" {
			continue
		}
		c, ok := lang.ParseCode(m[1])
		if !ok {
			t.Errorf("spec.md:%d: %s is not a code of lang/codes.go", i+1, m[1])
			continue
		}
		if seen[c] {
			t.Errorf("spec.md:%d: %s listed twice", i+1, m[1])
		}
		seen[c] = true
		if m[2] != c.Name() {
			t.Errorf("spec.md:%d: %s is named %q in lang/codes.go, not %q", i+1, m[1], c.Name(), m[2])
		}
		if c.IsLint() != (section == "lints") {
			t.Errorf("spec.md:%d: %s is listed under %s", i+1, m[1], section)
		}
	}
	for _, c := range lang.AllCodes() {
		if !seen[c] {
			t.Errorf("spec.md: code %s (%s) is missing from the code tables", c, c.Name())
		}
	}
}

// TestSpecFunctionTable checks that spec.md documents every function of
// the expression library, and no function that does not exist.
func TestSpecFunctionTable(t *testing.T) {
	text, _ := readSpec(t)
	row := regexp.MustCompile("^\\| `([a-z_0-9]+)\\(")
	inTable := false
	listed := map[string]bool{}
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#### Function library") {
			inTable = true
			continue
		}
		if inTable && strings.HasPrefix(line, "#") {
			break
		}
		if !inTable {
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil {
			if _, ok := fn.Lookup(m[1]); !ok {
				t.Errorf("spec.md:%d: function %q is not in stdlib/fn", i+1, m[1])
			}
			listed[m[1]] = true
		}
	}
	for _, f := range fn.Functions {
		if !listed[f.Name] {
			t.Errorf("spec.md: function %q of stdlib/fn is not documented (signature %s)", f.Name, f.Signature)
		}
	}
}

// TestConformanceCoverage checks that the suite exercises every code but
// the internal one, and that there are enough clean cases.
func TestConformanceCoverage(t *testing.T) {
	covered := map[lang.Code]int{}
	clean := 0
	paths := caseFiles(t)
	for _, path := range paths {
		c, err := loadCase(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.want) == 0 {
			clean++
		}
		for _, w := range c.want {
			body := w
			if i := strings.Index(w, ":PIPE"); i >= 0 {
				body = w[i+1:]
			}
			code, ok := lang.ParseCode(strings.Fields(body)[0])
			if !ok {
				t.Errorf("%s: want line %q has no known code", path, w)
				continue
			}
			covered[code]++
		}
	}
	for _, c := range lang.AllCodes() {
		if c == lang.Internal {
			continue
		}
		if covered[c] == 0 {
			t.Errorf("no conformance case expects %s (%s)", c, c.Name())
		}
	}
	if len(paths) < 60 || clean < 10 {
		t.Errorf("the suite has %d cases, %d of them clean; want at least 60 and 10", len(paths), clean)
	}
}

// TestSpecComponents checks that the component table of spec.md lists
// every registered component with the delivery guarantees it declares.
func TestSpecComponents(t *testing.T) {
	text, _ := readSpec(t)
	rows := map[string]string{} // "kind name" -> delivery cell
	row := regexp.MustCompile("^\\| (source|transform|sink) \\| `([a-z0-9_]+)` \\| ([a-z_, ]*)\\|")
	for _, line := range strings.Split(text, "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			rows[m[1]+" "+m[2]] = strings.TrimSpace(m[3])
		}
	}
	for _, s := range stdlib.Default.Specs("") {
		key := string(s.Kind) + " " + s.Name
		got, ok := rows[key]
		if !ok {
			t.Errorf("spec.md: component %s is not in the component table", key)
			continue
		}
		var want []string
		for _, d := range s.Delivery {
			want = append(want, string(d))
		}
		if got != strings.Join(want, ", ") {
			t.Errorf("spec.md: component %s lists delivery %q, the registry declares %q", key, got, strings.Join(want, ", "))
		}
	}
	for _, name := range []string{"filter", "map", "route"} {
		if _, ok := rows["transform "+name]; !ok {
			t.Errorf("spec.md: built-in transform %q is not in the component table", name)
		}
	}
}
