package spec

import (
	"fmt"
	"os"
	"testing"
)

func TestZZPlan(t *testing.T) {
	p := os.Getenv("SCRATCH3")
	if p == "" {
		t.Skip()
	}
	src, _ := os.ReadFile(p)
	prog, ds := compileDir(t, map[string][]byte{mainFile: src})
	fmt.Println(ds.Error())
	out, err := buildPlan(prog)
	fmt.Println(string(out), err)
}
