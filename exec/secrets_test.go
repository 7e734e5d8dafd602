package exec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/core"
)

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	props := filepath.Join(dir, "db.properties")
	os.WriteFile(props, []byte("# credentials\nuser = app\npassword=s3cr=t\n! other\nport: 5432\n"), 0o600)
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("abc123\n"), 0o600)
	sec := EnvFileSecrets{LookupEnv: func(k string) (string, bool) {
		if k == "HOST" {
			return "db.local", true
		}
		return "", false
	}}
	for _, c := range []struct{ in, want string }{
		{"${env:HOST}", "db.local"},
		{"postgres://${file:" + props + ":user}:${file:" + props + ":password}@${env:HOST}/x", "postgres://app:s3cr=t@db.local/x"},
		{"Bearer ${file:" + token + "}", "Bearer abc123"},
		{"${file:" + props + ":port}", "5432"},
		{"plain", "plain"},
	} {
		got, err := expandSecrets(c.in, sec)
		if err != nil || got != c.want {
			t.Errorf("expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, msg string }{
		{"${env:MISSING}", `environment variable "MISSING" is not set`},
		{"${file:" + props + ":nokey}", `has no key "nokey"`},
		{"${file:" + filepath.Join(dir, "nope") + "}", "reading secret file"},
		{"${vault:x}", `unknown secret provider "vault"`},
		{"${env:HOST", "unterminated"},
	} {
		_, err := expandSecrets(c.in, sec)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("expand(%q) error = %v, want %q", c.in, err, c.msg)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cr=t") || strings.Contains(err.Error(), "db.local")) {
			t.Errorf("error %q shows a secret", err)
		}
	}
}

func TestSecretAttrConverted(t *testing.T) {
	st := &plan.Stage{Name: "g", Attrs: map[string]*plan.Value{
		"count": {Kind: plan.SecretValue, Str: "${env:N}"},
		"name":  {Kind: plan.SecretValue, Str: "x-${env:N}"},
	}}
	spec := &stdlib.Spec{Params: []stdlib.Param{{Name: "count", Type: stdlib.Int}, {Name: "name", Type: stdlib.String}}}
	sec := EnvFileSecrets{LookupEnv: func(string) (string, bool) { return "42", true }}
	attrs, err := configAttrs(st, spec, sec)
	if err != nil {
		t.Fatal(err)
	}
	if attrs["count"] != int64(42) || attrs["name"] != "x-42" {
		t.Fatalf("attrs %v", attrs)
	}
	sec = EnvFileSecrets{LookupEnv: func(string) (string, bool) { return "hunter2", true }}
	if _, err := configAttrs(st, spec, sec); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want one that does not show the value", err)
	}
}

// TestSecretAttrLikeLiteral checks that a reference resolves to what the
// literal it stands for means: a size with a unit, a duration in days, an
// enum checked against its identifiers, and nested block attributes, with
// the spec's check run on the resolved values.
func TestSecretAttrLikeLiteral(t *testing.T) {
	ref := func(s string) *plan.Value { return &plan.Value{Kind: plan.SecretValue, Str: s} }
	st := &plan.Stage{Name: "out", Attrs: map[string]*plan.Value{
		"path":            {Kind: plan.StringValue, Str: "out.jsonl"},
		"rotate_size":     ref("${env:ROT}"),
		"rotate_interval": ref("${env:EVERY}"),
		"format":          ref("${env:FORMAT}"),
	}}
	env := map[string]string{"ROT": "1MiB", "EVERY": "1d", "FORMAT": "csv"}
	sec := EnvFileSecrets{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	attrs, err := configAttrs(st, core.FileSinkSpec, sec)
	if err != nil {
		t.Fatal(err)
	}
	if attrs["rotate_size"] != int64(1<<20) || attrs["rotate_interval"] != 24*time.Hour || attrs["format"] != stdlib.Ident("csv") || attrs["header"] != true {
		t.Fatalf("attrs %v", attrs)
	}
	for _, c := range []struct{ name, value, want string }{
		{"ROT", "1 MiB", `attribute "rotate_size": not a size`},
		{"EVERY", "1.5h", `attribute "rotate_interval": not a duration`},
		{"FORMAT", "xml", `attribute "format": not one of json, csv, lines`},
	} {
		old := env[c.name]
		env[c.name] = c.value
		if _, err := configAttrs(st, core.FileSinkSpec, sec); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), c.value) {
			t.Errorf("%s=%q: error %v, want %q without the value", c.name, c.value, err, c.want)
		}
		env[c.name] = old
	}
	// The spec's check sees the resolved value.
	env["N"] = "-5"
	gen := &plan.Stage{Name: "gen", Attrs: map[string]*plan.Value{"count": ref("${env:N}"),
		"fields": {Kind: plan.MapValue, Map: []*plan.MapEntry{{Key: "x", Value: sval("y")}}}}}
	if _, err := configAttrs(gen, core.GenerateSpec, sec); err == nil || !strings.Contains(err.Error(), `attribute "count": count must not be negative`) {
		t.Errorf("negative count: %v", err)
	}
	// Nested in a block.
	st = &plan.Stage{Name: "k", Attrs: map[string]*plan.Value{
		"tls": {Kind: plan.MapValue, Map: []*plan.MapEntry{{Key: "insecure_skip_verify", Value: ref("${env:SKIP}")}}},
	}}
	env["SKIP"] = "true"
	spec := &stdlib.Spec{Params: []stdlib.Param{{Name: "tls", Type: stdlib.Block(
		stdlib.Param{Name: "insecure_skip_verify", Type: stdlib.Bool},
		stdlib.Param{Name: "server_name", Type: stdlib.String, Default: "x"})}}}
	attrs, err = configAttrs(st, spec, sec)
	if err != nil {
		t.Fatal(err)
	}
	if tls := attrs["tls"].(map[string]any); tls["insecure_skip_verify"] != true || tls["server_name"] != "x" {
		t.Fatalf("tls %v", tls)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "plan.json")
	os.WriteFile(good, []byte(`{"version":1,"pipeline":"p","checkpoint_ns":1000,"stages":[],"edges":[]}`), 0o644)
	p, err := Load(good)
	if err != nil || p.Pipeline != "p" {
		t.Fatalf("Load = %v, %v", p, err)
	}
	bad := filepath.Join(dir, "v2.json")
	os.WriteFile(bad, []byte(`{"version":2}`), 0o644)
	if _, err := Load(bad); err == nil {
		t.Fatal("plan version 2 loaded")
	}
}

// A reference in a URL's user-info is percent-encoded, so that a password
// may hold "@", "/", "#", "%" or a blank; elsewhere it is spliced as is.
func TestSecretInURLUserinfo(t *testing.T) {
	sec := EnvFileSecrets{LookupEnv: func(k string) (string, bool) {
		return map[string]string{"PW": "p@ss/w#rd% x", "U": "a:b", "H": "db:5432/x?y#z"}[k], true
	}, ReadFile: func(string) ([]byte, error) { return []byte("us/er"), nil }}
	for _, c := range []struct{ in, want string }{
		{"postgres://u:${env:PW}@h/db", "postgres://u:p%40ss%2Fw%23rd%25%20x@h/db"},
		{"postgres://${env:U}:${env:PW}@${env:H}", "postgres://a%3Ab:p%40ss%2Fw%23rd%25%20x@db:5432/x?y#z"},
		{"postgres://${env:H}/db?password=${env:PW}", "postgres://db:5432/x?y#z/db?password=p@ss/w#rd% x"},
		// The file path in the second reference does not end the user-info.
		{"postgres://${file:/run/user}:${file:/run/pw}@h", "postgres://us%2Fer:us%2Fer@h"},
		{"${env:PW}", "p@ss/w#rd% x"},
		{"u:${env:PW}@h", "u:p@ss/w#rd% x@h"},
	} {
		got, err := expandSecrets(c.in, sec)
		if err != nil || got != c.want {
			t.Errorf("expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
