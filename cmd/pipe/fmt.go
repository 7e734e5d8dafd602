package main

import (
	"bytes"
	"fmt"
	"os"

	udiff "github.com/aymanbagabas/go-udiff"

	"pipe.dev/pipe/lang/format"
)

func cmdFmt(e *env, args []string) int {
	fs := newFlags(e, "fmt", "FILES|DIRS|DIR/...", `Print .pipe files in canonical form (comments kept). With -w rewrite them in place,
with -l list the files whose formatting differs, with -d print a unified diff.`)
	write := fs.BoolP("write", "w", false, "rewrite files in place")
	list := fs.BoolP("list", "l", false, "list files whose formatting differs")
	diff := fs.BoolP("diff", "d", false, "print a diff instead of the formatted source")
	if code, ok := parseFlags(fs, args, someArgs); !ok {
		return code
	}
	files, err := expandArgs(fs.Args())
	if err != nil {
		return e.fail(exitUsage, "%v", err)
	}
	code := exitOK
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return e.fail(exitUsage, "%v", err)
		}
		out, diags := format.Source(f, src)
		if diags.HasErrors() {
			printDiagnostics(e.stderr, "text", diags.Errors(), sources{f: src})
			code = exitFindings
			continue
		}
		changed := !bytes.Equal(src, out)
		switch {
		case *list || *write || *diff:
			if *list && changed {
				fmt.Fprintln(e.stdout, f)
			}
			if *diff && changed {
				fmt.Fprint(e.stdout, udiff.Unified(f+".orig", f, string(src), string(out)))
			}
			if *write && changed {
				st, err := os.Stat(f)
				if err != nil {
					return e.fail(exitUsage, "%v", err)
				}
				if err := os.WriteFile(f, out, st.Mode().Perm()); err != nil {
					return e.fail(exitUsage, "%v", err)
				}
			}
		default:
			e.stdout.Write(out)
		}
	}
	return code
}
