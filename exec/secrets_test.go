package exec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
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
