package kafka

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// Records produced by @kafkajs/confluent-schema-registry go through pipe
// (kafka avro → map → kafka avro) and decode with the same library field
// by field equal, logical types included.
func TestAvroInteropKafkaJS(t *testing.T) {
	registryInterop(t, "avro", func(t *testing.T, node, dir, work string) {
		// The pipeline's schema is the input subject's, as pipe schema
		// pull would write it.
		schema, err := exec.Command(node, "-e", `
const s = require(process.argv[1]); process.stdout.write(s)`, filepath.Join(dir, "order_schema.js")).Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "order.avsc"), schema, 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// Protobuf records produced by @kafkajs/confluent-schema-registry (which
// writes no message indexes), their schema importing another registered
// as a reference, go through pipe (kafka protobuf → map → kafka protobuf,
// the schemas and the import pulled with pipe schema pull) and decode with
// the same library field by field equal.
func TestProtobufInteropKafkaJS(t *testing.T) {
	registryInterop(t, "protobuf", nil)
}

// JSON Schema records produced by @kafkajs/confluent-schema-registry go
// through pipe, validated on both sides, and decode (validated by ajv)
// with the same library field by field equal.
func TestJSONSchemaInteropKafkaJS(t *testing.T) {
	registryInterop(t, "json_schema", nil)
}

// registryInterop runs testdata/registry-interop/<format>.pipe between
// interop.js producing N records of format to the dev broker through the
// dev registry and interop.js checking what pipe wrote. The schema files
// the pipeline reads are the subjects' as pipe schema pull writes them, or
// (prepare, when set) what prepare writes into work.
func registryInterop(t *testing.T, format string, prepare func(t *testing.T, node, dir, work string)) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed")
	}
	dir, _ := filepath.Abs("testdata/registry-interop")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("run npm ci in " + dir)
		}
		t.Skip("npm packages not installed: run npm ci in " + dir)
	}
	bin := proctest.BuildPipe(t)
	reg := testRegistry(t)
	b, err := devbroker.Start(t.Context(), devbroker.Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	brokers := b.Addr()
	in, out := uniq("registry-interop-in"), uniq("registry-interop-out")
	newTopic(t, brokers, in, 1)
	newTopic(t, brokers, out, 1)
	const n = "20"
	runNode := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join(dir, "interop.js")}, args...)...)
		cmd.Dir = dir
		if outp, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("node %v: %v\n%s", args, err, outp)
		} else {
			t.Logf("node %s: %s", args[0], outp)
		}
	}
	runNode("produce", brokers, reg.URL(), in, out, n, format)

	work := t.TempDir()
	if prepare != nil {
		prepare(t, node, dir, work)
	} else {
		for subject, name := range map[string]string{in + "-value": "order", out + "-value": "order_out"} {
			// Referenced files land under their import paths in work.
			if outp, err := exec.Command(bin, "schema", "pull", "--registry", reg.URL(), "--subject", subject, "-o", work).CombinedOutput(); err != nil {
				t.Fatalf("pipe schema pull: %v\n%s", err, outp)
			}
			ext, dst := ".proto", name+".proto"
			if format == "json_schema" {
				ext, dst = ".json", name+".schema.json"
			}
			if err := os.Rename(filepath.Join(work, subject+ext), filepath.Join(work, dst)); err != nil {
				t.Fatal(err)
			}
		}
	}
	pipeline, err := os.ReadFile(filepath.Join(dir, format+".pipe"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(work, "interop.pipe")
	if err := os.WriteFile(file, pipeline, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--state-dir", filepath.Join(work, "state"), file)
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+brokers, "REGISTRY="+reg.URL(), "IN_TOPIC="+in, "OUT_TOPIC="+out)
	logf, _ := os.Create(filepath.Join(work, "pipe.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(work, "pipe.log"))
			t.Logf("pipe run:\n%s", b)
		}
	}()
	runNode("check", brokers, reg.URL(), out, n, format)
}
