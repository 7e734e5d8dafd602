package cluster

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// TestDeployBundle: a pipeline that imports a file is deployed with it
// (the bundle ImportedFiles collects, as pipe deploy sends it), stored
// with its version and run by a worker that has no such file; a bundle
// whose import is broken is rejected with its diagnostics.
func TestDeployBundle(t *testing.T) {
	addr := startDevBroker(t)
	dir := t.TempDir()
	w := startTestWorker(t, addr, "w1", filepath.Join(dir, "state"))
	ctx := context.Background()
	c := &Client{URL: w.srv.URL, HTTP: &http.Client{Timeout: 30 * time.Second}}
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "lib"), 0o755)
	lib := filepath.Join(src, "lib", "line.pipe")
	if err := os.WriteFile(lib, []byte("schema Line {\n  id: int\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	main := filepath.Join(src, "capibundle.pipe")
	text := strings.Replace(string(filesPipeline("capibundle", in, out)), "schema = Line", "schema = lib.Line", 1)
	text = "import \"lib/line.pipe\" as lib\n\n" + text[strings.Index(text, "pipeline"):]
	text = strings.Replace(text, "schema Line {\n  id: int\n}\n", "", 1)
	imports, err := ImportedFiles(stdlib.Default, main, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) != 1 || imports[lib] == "" {
		t.Fatalf("imports %v, want %s", imports, lib)
	}
	appendLines(t, in, 0, 50)
	d, err := c.DeployBundle(ctx, "capibundle", main, []byte(text), imports)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the bundled pipeline's records through", func() error {
		return exactlyOnce(fileIDs(t, out), 0, 50)
	})
	def, err := c.Definition(ctx, "capibundle")
	if err != nil || def.Version != d.Version || def.Imports[lib] != imports[lib] {
		t.Errorf("stored definition %+v, %v; want the import with version %d", def, err, d.Version)
	}

	// The same text without its bundle cannot read its import.
	var rej *Rejected
	if _, err := c.Deploy(ctx, "capibundle", main, []byte(text)); !errors.As(err, &rej) || !strings.Contains(string(rej.JSON), `"PIPE004"`) {
		t.Errorf("without its imports: %v, want PIPE004", err)
	}
	// A broken import: rejected, the stored version stays.
	imports[lib] = "schema Line {\n  id: nosuchtype\n}\n"
	if _, err := c.DeployBundle(ctx, "capibundle", main, []byte(text), imports); !errors.As(err, &rej) {
		t.Errorf("a broken import: %v, want it rejected", err)
	} else if !strings.Contains(string(rej.JSON), "line.pipe") {
		t.Errorf("diagnostics of a broken import do not name it: %s", rej.JSON)
	}
	if def, err := c.Definition(ctx, "capibundle"); err != nil || def.Version != d.Version {
		t.Errorf("after a rejected bundle: version %d, %v; want %d", def.Version, err, d.Version)
	}
}
