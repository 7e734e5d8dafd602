package monitor

import (
	"cmp"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/internal/testkit"
)

const pagePipe = `
pipeline mon_page {
  checkpoint = 200ms
  delivery   = at_least_once
}
source gen: generate {
  rate   = 200
  fields = { id = seq(), v = pick(["1", "2", "x"]) }
}
transform calc: map {
  n := to_int(v)
  on_error = skip
}
transform positive: filter { where n > 0 }
sink out: discard {}
gen -> calc -> positive -> out
`

// TestStatusPageChromium loads the status page of a running pipeline in
// Debian's headless Chromium, driven by playwright-core
// (testdata/browser/page_test.mjs): the page loads, the graph shows every
// stage, the counts move and the failing stage shows its error. The
// screenshot is kept in testdata/browser/out/status-page.png. Without
// chromium, node or playwright-core (npm install in testdata/browser) it
// skips, naming what is missing; with CI=true it fails instead.
func TestStatusPageChromium(t *testing.T) {
	dir, err := filepath.Abs("testdata/browser")
	if err != nil {
		t.Fatal(err)
	}
	chromium := cmp.Or(os.Getenv("PIPE_CHROMIUM"), "/usr/bin/chromium")
	var missing []string
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, chromium+" (apt-get install chromium)")
	}
	node, err := osexec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		missing = append(missing, "playwright-core (npm install in monitor/testdata/browser)")
	}
	if len(missing) > 0 {
		msg := "the browser test needs " + strings.Join(missing, ", ")
		testkit.Missing(t, "%s", msg)
	}
	const token = "page-token"
	r := start(t, compile(t, pagePipe), Options{Token: token})
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(out, "status-page.png")
	cmd := osexec.CommandContext(t.Context(), node, "page_test.mjs", r.srv.URL(), token, shot, "gen", "calc", "positive", "out", "--", "calc")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PIPE_CHROMIUM="+chromium)
	res, err := cmd.CombinedOutput()
	t.Logf("screenshot: %s", shot)
	if err != nil {
		t.Fatalf("the page in chromium: %v\n%s", err, res)
	}
	t.Logf("%s", res)
}
