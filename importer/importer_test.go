package importer_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/importer"
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/format"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/all"
)

var update = flag.Bool("update", false, "rewrite the .golden files")

// TestGolden converts every config in testdata and compares the formatted
// pipelines with testdata/*.golden; each of them must check clean (no
// errors, no lint warnings). Run with -update after a deliberate change.
func TestGolden(t *testing.T) {
	var paths []string
	for _, g := range []string{"testdata/*.json", "testdata/*.properties", "testdata/real/*.json", "testdata/real/*.properties"} {
		m, _ := filepath.Glob(g)
		paths = append(paths, m...)
	}
	for _, path := range paths {
		// The configs gathered from public documentation and examples
		// (testdata/real, each with where it came from) are one
		// connector each: no join.
		real := filepath.Base(filepath.Dir(path)) == "real"
		for _, join := range []bool{false, true} {
			if join && real {
				continue
			}
			name := filepath.Base(path)
			if join {
				name += ".join"
			}
			t.Run(name, func(t *testing.T) {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				conns, err := importer.Load(path, data)
				if err != nil {
					t.Fatal(err)
				}
				files, err := importer.Convert(conns, importer.Options{Join: join, HasComponent: has})
				if err != nil {
					t.Fatal(err)
				}
				var got strings.Builder
				for _, f := range files {
					src, diags := format.Source(f.Name+".pipe", []byte(f.Text))
					if len(diags) > 0 {
						t.Fatalf("%s does not format:\n%v\n%s", f.Name, diags, f.Text)
					}
					// pipe fmt leaves the written file as it is: the
					// origin comments are in their formatted place.
					if again, _ := format.Source(f.Name+".pipe", src); string(again) != string(src) {
						t.Errorf("%s: formatting the written file changes it:\n%s", f.Name, again)
					}
					// Connect configs carry no schemas: only the lints
					// about untyped records may remain.
					_, diags = compiler.Compile(&compiler.Config{}, f.Name+".pipe", src)
					for _, d := range diags {
						// A Parquet S3 sink needs the records' type, which
						// a connector config does not give: the file says
						// so and the user declares a schema.
						if d.Code == lang.BadAttributeValue && strings.Contains(d.Message, "parquet needs the type of the records") {
							continue
						}
						// errors.tolerance = all without a dead-letter
						// topic is Kafka Connect's skip: the import keeps
						// it, notes it, and the lint says what it does.
						if d.Code == lang.SkipWithoutDLQ {
							continue
						}
						if d.Code != lang.UntypedSource && d.Code != lang.AnyResult {
							t.Errorf("%s does not check clean: %v\n%s", f.Name, d, src)
						}
					}
					got.WriteString("=== " + f.Name + ".pipe\n")
					got.Write(src)
				}
				golden := filepath.Join(filepath.Dir(path), name+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update)", err)
				}
				if got.String() != string(want) {
					t.Errorf("output differs from %s (run with -update and review the diff):\n%s", golden, got.String())
				}
			})
		}
	}
}

func has(kind, name string) bool { return stdlib.Default.Lookup(stdlib.Kind(kind), name) != nil }

// TestSecretsStayOut: a password given in a config reaches neither the
// pipeline nor its notes; a config provider reference pipe resolves
// itself is kept as it is.
func TestSecretsStayOut(t *testing.T) {
	conns := []importer.Connector{{Name: "s", From: "t", Config: map[string]string{
		"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector", "topics": "a",
		"connection.url":      "jdbc:postgresql://h:5432/d?password=urlpass",
		"connection.user":     "u",
		"connection.password": "topsecret",
		"sasl.jaas.config":    "org.apache.kafka.common.security.plain.PlainLoginModule required password=\"jaaspass\";",
	}}, {Name: "r", From: "t", Config: map[string]string{
		"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector", "table.whitelist": "t", "mode": "bulk",
		"connection.url":      "jdbc:postgresql://h:5432/d",
		"connection.password": "${file:/run/secrets.properties:pg}",
	}}}
	files, err := importer.Convert(conns, importer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, f := range files {
		all.WriteString(f.Text)
		for _, n := range f.Notes {
			all.WriteString(n.String() + "\n")
		}
	}
	for _, s := range []string{"topsecret", "urlpass", "jaaspass"} {
		if strings.Contains(all.String(), s) {
			t.Errorf("%q appears in the output:\n%s", s, all.String())
		}
	}
	if !strings.Contains(all.String(), "${file:/run/secrets.properties:pg}") {
		t.Errorf("the file reference was not kept:\n%s", all.String())
	}
}

func TestLoadForms(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // name=class of each connector
	}{
		{"rest.json", `{"name":"a","config":{"connector.class":"FileStreamSource","file":"x","topic":"t"}}`, []string{"a=FileStreamSourceConnector"}},
		{"bare.json", `{"connector.class":"org.apache.kafka.connect.file.FileStreamSinkConnector","name":"b","tasks.max":2}`, []string{"b=FileStreamSinkConnector"}},
		{"array.json", `[{"name":"a","config":{"connector.class":"X"}},{"connector.class":"Y","name":"b"}]`, []string{"a=XConnector", "b=YConnector"}},
		{"expand.json", `{"b":{"info":{"name":"b","config":{"connector.class":"B"}},"status":{}},"a":{"info":{"name":"a","config":{"connector.class":"A"}}}}`, []string{"a=AConnector", "b=BConnector"}},
		{"c.properties", "# comment\n! also\nconnector.class = FileStreamSource\nfile: /a\\\n   /b.log\ntopic t\\u00e9\nkey\\=x=1\n", []string{"c=FileStreamSourceConnector"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conns, err := importer.Load(c.name, []byte(c.src))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, cn := range conns {
				got = append(got, cn.Name+"="+cn.Class())
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			if c.name == "c.properties" {
				cfg := conns[0].Config
				if cfg["file"] != "/a/b.log" || cfg["topic"] != "té" || cfg["key=x"] != "1" {
					t.Fatalf("properties read as %q", cfg)
				}
			}
		})
	}
	for _, bad := range []string{`{"x": 1}`, `[1]`, `{"name":"a","config":{"connector.class":"A","n":{"x":1}}}`} {
		if _, err := importer.Load("bad.json", []byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
