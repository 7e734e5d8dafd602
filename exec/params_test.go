package exec

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

// TestParams runs a pipeline whose expressions read run-time parameters:
// values read from the environment when the run starts, as their types,
// and a secret that keys an HMAC but shows in no log line, error or
// record (its value is registered for redaction).
func TestParams(t *testing.T) {
	const src = `pipeline params_demo {
  delivery = at_least_once
}
param min_id: int = "${env:MIN_ID}"
param key: secret = "${env:HMAC_KEY}"
source s: generate {
  count  = 4
  fields = { id = seq(), user = format("u%d", seq()) }
}
transform big: filter {
  where id >= params.min_id
}
transform h: map {
  user := hmac_sha256(params.key, user)
  bad  := id < 4 ? id : to_int("key " + user)
  on_error = dead_letter(rejects)
}
sink out: file {
  path = "OUT"
}
sink rejects: file {
  path = "REJ"
}
s -> big -> h -> out
`
	dir := t.TempDir()
	text := strings.NewReplacer("OUT", filepath.Join(dir, "out.jsonl"), "REJ", filepath.Join(dir, "rejects.jsonl")).Replace(src)
	prog, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "params.pipe", []byte(text))
	if prog == nil {
		t.Fatal(diags)
	}
	p, err := plan.Build(prog)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "hunter2-hmac-key"
	env := map[string]string{"MIN_ID": " 3 ", "HMAC_KEY": secret}
	sec := EnvFileSecrets{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	var logs bytes.Buffer
	cfg := &Config{Registry: stdlib.Default, StateDir: filepath.Join(dir, "state"), Secrets: sec,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := Run(t.Context(), p, cfg); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	rejects, _ := os.ReadFile(filepath.Join(dir, "rejects.jsonl"))
	// HMAC-SHA-256 of "u3" under the key.
	if !strings.Contains(string(out), `"id":3`) || strings.Contains(string(out), `"id":2`) || !strings.Contains(string(out), `"user":"5080bd782dbea625f5960f5fb69a10d090b53ecdfe217b2f7d6613445972f312"`) {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(string(rejects), `"stage":"h"`) {
		t.Errorf("rejects:\n%s", rejects)
	}
	for what, s := range map[string]string{"logs": logs.String(), "output": string(out), "rejects": string(rejects)} {
		if strings.Contains(s, secret) {
			t.Errorf("%s show the secret:\n%s", what, s)
		}
	}

	// A value that is not of the parameter's type fails the start, naming
	// the parameter and the reference, not the value.
	env["MIN_ID"] = "three"
	err = Run(t.Context(), p, &Config{Registry: stdlib.Default, StateDir: filepath.Join(dir, "state2"), Secrets: sec})
	if err == nil || !strings.Contains(err.Error(), `param "min_id": the value of ${env:MIN_ID} is not an int`) || strings.Contains(err.Error(), "three") {
		t.Errorf("bad value: %v", err)
	}
	delete(env, "HMAC_KEY")
	env["MIN_ID"] = "1"
	if err := Run(t.Context(), p, &Config{Registry: stdlib.Default, StateDir: filepath.Join(dir, "state3"), Secrets: sec}); err == nil || !strings.Contains(err.Error(), `param "key"`) {
		t.Errorf("unset variable: %v", err)
	}
}
