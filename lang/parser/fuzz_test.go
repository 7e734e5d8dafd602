package parser_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/format"
	"pipe.dev/pipe/lang/parser"
)

// seedFiles returns every .pipe file under the repository's examples/ and
// spec/ directories (found from this package's directory) and testdata/,
// plus the .pipe sections of txtar archives under spec/.
func seedFiles(t testing.TB) map[string][]byte {
	t.Helper()
	seeds := map[string][]byte{}
	for _, root := range []string{"../../examples", "../../spec", "testdata"} {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			switch {
			case strings.HasSuffix(path, ".pipe"):
				if src, err := os.ReadFile(path); err == nil {
					seeds[path] = src
				}
			case strings.HasSuffix(path, ".txtar"):
				if a, err := txtar.ParseFile(path); err == nil {
					for _, f := range a.Files {
						if strings.HasSuffix(f.Name, ".pipe") {
							seeds[path+"/"+f.Name] = f.Data
						}
					}
				}
			}
			return nil
		})
	}
	return seeds
}

func FuzzParse(f *testing.F) {
	for _, src := range seedFiles(f) {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		checkRoundTrip(t, "fuzz.pipe", src)
	})
}

// checkRoundTrip checks the parser's properties on src: every span lies
// inside the source, and a clean parse formats to source that parses
// cleanly and formats to itself.
func checkRoundTrip(t *testing.T, name string, src []byte) {
	t.Helper()
	f, diags := parser.ParseFile(name, src)
	// The hand-written fast path and participle build the same tree.
	pf, pdiags := parser.ParseWithParticiple(name, src)
	if !reflect.DeepEqual(f, pf) || !reflect.DeepEqual(diags, pdiags) {
		t.Fatalf("fast path and participle differ on %q\nfast:       %s\n%v\nparticiple: %s\n%v", src, dump(f), diags, dump(pf), pdiags)
	}
	for _, b := range checkSpans(name, src, f, diags) {
		t.Error(b)
	}
	for _, d := range diags {
		if d.Code == 901 {
			t.Fatalf("internal error: %v", d)
		}
	}
	if diags.HasErrors() {
		// The partial tree must not make the printer fail either.
		format.Format(f)
		return
	}
	out := format.Format(f)
	f2, diags2 := parser.ParseFile(name, out)
	if diags2.HasErrors() {
		t.Fatalf("formatted source does not parse: %v\nsource:\n%s\nformatted:\n%s", diags2, src, out)
	}
	if a, b := commentText(f), commentText(f2); a != b {
		t.Errorf("comments changed: %q became %q\nformatted:\n%s", a, b, out)
	}
	out2 := format.Format(f2)
	if !bytes.Equal(out, out2) {
		t.Fatalf("format is not idempotent\nsource:\n%q\nfirst:\n%s\nsecond:\n%s", src, out, out2)
	}
}

// commentText returns the characters of every comment but blanks and the
// "//" markers, so that line comments joined onto one line compare equal.
func commentText(f *ast.File) string {
	var b strings.Builder
	for _, c := range f.Comments {
		for _, r := range strings.ReplaceAll(c.Text, "//", "") {
			if r != ' ' && r != '\t' && r != '\r' && r != '\n' {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}
