package spec

import (
	"fmt"
	"os"
	"testing"
)

func TestZZScratch(t *testing.T) {
	p := os.Getenv("SCRATCH")
	if p == "" {
		t.Skip()
	}
	src, _ := os.ReadFile(p)
	_, ds := compileDir(t, map[string][]byte{mainFile: src})
	for _, d := range ds {
		fmt.Println(diagLine(d), d.Severity, d.Message)
	}
}
