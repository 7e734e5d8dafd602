package cluster

import (
	"errors"
	"fmt"
	"path"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/stdlib"
)

// errImports is what a deployed pipeline that imports files is told: a
// definition is one self-contained .pipe text.
var errImports = errors.New("a pipeline deployed to a cluster cannot import files yet: put the schemas and defs it needs in its own file")

// Check compiles a pipeline's .pipe text as `pipe check` and `pipe run`
// do: diags holds the errors that reject it, the same `pipe check` reports
// (plus PIPE206 for a file with nothing to run). When name is not empty,
// the pipeline must be named name. err is an internal failure.
func Check(reg *stdlib.Registry, file string, src []byte, name string) (*plan.Plan, lang.Diagnostics, error) {
	if file == "" {
		file = name + ".pipe"
	}
	cfg := &compiler.Config{Registry: reg, ReadFile: func(string) ([]byte, error) { return nil, errImports }}
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
	p, diags, err := Check(reg, def.File, []byte(def.Source), def.Name)
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("the pipeline does not compile on this worker: %w", diags)
	}
	return p, nil
}
