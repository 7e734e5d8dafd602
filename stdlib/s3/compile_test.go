package s3_test

import (
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/core"
	_ "pipe.dev/pipe/stdlib/s3"
)

const compileSrc = `pipeline p { delivery = exactly_once }

schema Ev {
  id:      int
  country: string
}

source in: file {
  path   = "in.jsonl"
  schema = Ev
}

sink out: s3 {
  endpoint   = "http://127.0.0.1:9123"
  bucket     = "events"
  access_key = "${env:S3_ACCESS_KEY}"
  secret_key = "${env:S3_SECRET_KEY}"
  format     = parquet
  prefix    := "country=" + country + "/"
}

in -> out
`

// TestCompileChecks: what is static about the s3 components is checked
// by pipe check, at the attribute.
func TestCompileChecks(t *testing.T) {
	if _, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "p.pipe", []byte(compileSrc)); diags.HasErrors() {
		t.Fatalf("the valid pipeline: %v", diags)
	}
	for _, c := range []struct{ name, old, new, want string }{
		{"format", "format     = parquet", "format     = avro", "format"},
		{"prefix not a string", `prefix    := "country=" + country + "/"`, "prefix    := id", "prefix"},
		{"prefix absolute", `prefix    := "country=" + country + "/"`, `prefix = "/x/"`, "must not start with /"},
		{"rotate_records", "format     = parquet", "format = parquet\n  rotate_records = -1", "rotate_records must not be negative"},
		{"rotate_size unit", "format     = parquet", "format = parquet\n  rotate_size = 100", "rotate_size"},
		{"part_size", "format     = parquet", "format = parquet\n  part_size = 1MiB", "part_size must be between 5MiB and 5GiB"},
		{"columns without csv", "format     = parquet", "format = parquet\n  columns = [\"id\"]", "columns applies to format = csv only"},
		{"endpoint", `endpoint   = "http://127.0.0.1:9123"`, `endpoint   = "ftp://x"`, "scheme must be http or https"},
		{"bucket", `bucket     = "events"`, `bucket     = "a/b"`, "is not a bucket name"},
		{"secret without key", `access_key = "${env:S3_ACCESS_KEY}"`, "", "access_key and secret_key must be set together"},
		{"delivery", "format     = parquet", "format = parquet\n  delivery = at_most_once", "at_most_once"},
		{"source format", "in -> out", "in -> out\nsource objs: s3 {\n  endpoint = \"127.0.0.1:9123\"\n  bucket = \"events\"\n  format = avro\n}\nobjs -> out", "format"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(compileSrc, c.old, c.new, 1)
			if src == compileSrc {
				t.Fatal("the change did not apply")
			}
			_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "p.pipe", []byte(src))
			if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) {
				t.Fatalf("diagnostics %v, want an error with %q", diags, c.want)
			}
		})
	}
}
