package spec

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretsStaySymbolic compiles the secrets case with the referenced
// variables and files set to sentinel values, and checks that the plan
// keeps every reference verbatim and never holds a resolved value.
func TestSecretsStaySymbolic(t *testing.T) {
	c, err := loadCase(filepath.Join("conformance", "clean_secrets_symbolic.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	const sentinel = "sentinel-secret-value"
	t.Setenv("KAFKA_BROKERS", sentinel+"-brokers")
	t.Setenv("KAFKA_USER", sentinel+"-user")
	files := map[string][]byte{}
	for k, v := range c.files {
		files[k] = v
	}
	prog, ds := compileDir(t, files)
	if prog == nil {
		t.Fatalf("the secrets case must compile:\n%s", ds.Error())
	}
	for _, d := range ds {
		if strings.Contains(d.String(), sentinel) {
			t.Errorf("a diagnostic shows a resolved secret: %s", d)
		}
	}
	out, err := buildPlan(prog)
	if err != nil {
		t.Fatal(err)
	}
	plan := string(out)
	if strings.Contains(plan, sentinel) {
		t.Errorf("the plan holds a resolved secret:\n%s", plan)
	}
	for _, ref := range []string{"${env:KAFKA_BROKERS}", "${env:KAFKA_USER}", "${file:/run/secrets/kafka.properties:password}"} {
		if !strings.Contains(plan, ref) {
			t.Errorf("the plan lost the reference %s:\n%s", ref, plan)
		}
	}
	if n := strings.Count(plan, `"kind": "secret"`); n < 3 {
		t.Errorf("the plan has %d values of kind secret, want 3:\n%s", n, plan)
	}
}
