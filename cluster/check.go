package cluster

import (
	"errors"
	"fmt"
	"os"
	"path"
	"unicode/utf8"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
)

// errImports is what a deployed pipeline is told for an import its
// bundle does not hold: a worker reads no file of its own.
var errImports = errors.New("not in the deployed bundle: deploy with pipe deploy, which sends the files a pipeline imports, or send them in the PUT's \"imports\"")

// Check compiles a pipeline's .pipe text as `pipe check` and `pipe run`
// do: diags holds the errors that reject it, the same `pipe check` reports
// (plus PIPE206 for a file with nothing to run). When name is not empty,
// the pipeline must be named name. err is an internal failure.
//
// imports holds the files the pipeline imports (.pipe files and schema
// files), by the path the compiler reads: the import's path joined to the
// directory of file, as [ImportedFiles] returns them. Nothing else is read.
func Check(reg *stdlib.Registry, file string, src []byte, name string, imports map[string]string) (*plan.Plan, lang.Diagnostics, error) {
	if file == "" {
		file = name + ".pipe"
	}
	read := func(p string) ([]byte, error) {
		if text, ok := imports[p]; ok {
			return []byte(text), nil
		}
		return nil, errImports
	}
	cfg := &compiler.Config{Registry: reg, ReadFile: read}
	prog, diags := compiler.Compile(cfg, path.Clean(file), src)
	diags = compiler.Runnable(prog, diags, file).Errors()
	if diags.HasErrors() {
		return nil, diags, nil
	}
	p, err := plan.Build(prog)
	if err != nil {
		return nil, nil, err
	}
	if name != "" && p.Pipeline != name {
		return nil, nil, &NameError{Want: name, Got: p.Pipeline}
	}
	return p, nil, nil
}

// NameError says a pipeline's text names another pipeline than its URL.
type NameError struct{ Want, Got string }

func (e *NameError) Error() string {
	return fmt.Sprintf("the pipeline is named %q (its pipeline block, else its file name), not %q", e.Got, e.Want)
}

// compileDef compiles a stored definition into the plan an instance runs.
// A definition is stored only once it compiles clean, so an error here
// means this worker's components differ from those of the worker that
// took it.
func compileDef(reg *stdlib.Registry, def Definition) (*plan.Plan, error) {
	p, diags, err := Check(reg, def.File, []byte(def.Source), def.Name, def.Imports)
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("the pipeline does not compile on this worker: %w", diags)
	}
	return p, nil
}

// ImportedFiles compiles the .pipe text of file as `pipe check` does,
// reading imports with os.ReadFile, and returns every file it read, by the
// path it read: the bundle [Check] takes.
func ImportedFiles(reg *stdlib.Registry, file string, src []byte) (map[string]string, error) {
	out := map[string]string{}
	var failed error
	read := func(p string) ([]byte, error) {
		data, err := os.ReadFile(p)
		if err != nil {
			failed = err
			return nil, err
		}
		if !utf8.Valid(data) {
			failed = fmt.Errorf("%s: not UTF-8 text: a bundle holds text files only", p)
			return nil, failed
		}
		out[p] = string(data)
		return data, nil
	}
	compiler.Compile(&compiler.Config{Registry: reg, ReadFile: read}, path.Clean(file), src)
	return out, failed
}
