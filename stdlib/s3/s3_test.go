package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib"
)

// The tests run against a real S3-compatible server: PIPE_S3_ENDPOINT
// (default 127.0.0.1:9123, where .ci/s3server starts Versity's gateway),
// with PIPE_S3_ACCESS_KEY and PIPE_S3_SECRET_KEY (default pipe-test and
// pipe-test-secret). Without one they skip, naming it; with CI=true they
// fail.

var (
	testEndpoint  = testkit.Env("PIPE_S3_ENDPOINT", "127.0.0.1:9123")
	testAccessKey = testkit.Env("PIPE_S3_ACCESS_KEY", "pipe-test")
	testSecretKey = testkit.Env("PIPE_S3_SECRET_KEY", "pipe-test-secret")
)

// s3Env is a fresh bucket on the test server.
type s3Env struct {
	cli    *minio.Client
	bucket string
}

// newEnv creates a bucket of its own for the test on the test server,
// removed when it ends.
func newEnv(t testing.TB) *s3Env {
	t.Helper()
	return newEnvAt(t, testEndpoint)
}

// newEnvAt creates a bucket of the test's own on the server at endpoint.
func newEnvAt(t testing.TB, endpoint string) *s3Env {
	t.Helper()
	host, secure, err := parseEndpoint(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4(testAccessKey, testSecretKey, ""),
		Secure: secure, BucketLookup: minio.BucketLookupPath, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.ListBuckets(ctx); err != nil {
		msg := fmt.Sprintf("no S3-compatible server at %s (start one with .ci/s3server): %v", endpoint, err)
		testkit.Missing(t, "%s", msg)
	}
	e := &s3Env{cli: cli, bucket: fmt.Sprintf("pipe-test-%d", rand.IntN(1e9))}
	if err := cli.MakeBucket(context.Background(), e.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for o := range cli.ListObjects(ctx, e.bucket, minio.ListObjectsOptions{Recursive: true}) {
			cli.RemoveObject(ctx, e.bucket, o.Key, minio.RemoveObjectOptions{})
		}
		for u := range cli.ListIncompleteUploads(ctx, e.bucket, "", true) {
			cli.RemoveIncompleteUpload(ctx, e.bucket, u.Key)
		}
		cli.RemoveBucket(ctx, e.bucket)
	})
	return e
}

// attrs returns the connection attributes of the test bucket and extra.
func (e *s3Env) attrs(extra map[string]any) map[string]any {
	m := map[string]any{"endpoint": "http://" + testEndpoint, "bucket": e.bucket,
		"access_key": testAccessKey, "secret_key": testSecretKey, "path_style": true, "retry_timeout": 2 * time.Second}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// keys lists the bucket's object keys under prefix, sorted.
func (e *s3Env) keys(t testing.TB, prefix string) []string {
	t.Helper()
	var out []string
	for o := range e.cli.ListObjects(context.Background(), e.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	slices.Sort(out)
	return out
}

// get returns an object's content.
func (e *s3Env) get(t testing.TB, key string) []byte {
	t.Helper()
	o, err := e.cli.GetObject(context.Background(), e.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return b
}

// put writes an object.
func (e *s3Env) put(t testing.TB, key string, data []byte) {
	t.Helper()
	if _, err := e.cli.PutObject(context.Background(), e.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// config builds a checked Config of spec from attrs.
func config(t testing.TB, spec *stdlib.Spec, attrs map[string]any) stdlib.Config {
	t.Helper()
	vals, err := spec.Values(attrs)
	if err != nil {
		t.Fatal(err)
	}
	if errs := spec.Check(vals); len(errs) > 0 {
		t.Fatalf("%v", errs)
	}
	return stdlib.Config{Pipeline: "p", Stage: "out", Attrs: vals, Delivery: stdlib.ExactlyOnce, Tasks: 1}
}

// gateway is a versitygw process of a test's own.
type gateway struct {
	t          *testing.T
	bin, addr  string
	data, side string
	flags      []string // global flags before the backend's: --cert, --key
	cmd        *osexec.Cmd
}

func startGateway(t *testing.T, flags ...string) *gateway {
	bin, err := osexec.LookPath("versitygw")
	if err != nil {
		gopath, _ := osexec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "versitygw")
		if _, err := os.Stat(bin); err != nil {
			msg := "no versitygw to run (.ci/s3server installs it)"
			testkit.Missing(t, "%s", msg)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	g := &gateway{t: t, bin: bin, addr: addr, data: t.TempDir(), side: t.TempDir(), flags: flags}
	g.start()
	t.Cleanup(func() {
		g.cmd.Process.Kill()
		g.cmd.Wait()
	})
	return g
}

func (g *gateway) start() {
	args := append([]string{"--port", g.addr, "--access", testAccessKey, "--secret", testSecretKey, "--quiet"}, g.flags...)
	g.cmd = osexec.Command(g.bin, append(args, "posix", "--sidecar", g.side, g.data)...)
	g.cmd.Stderr = &proctest.LogWriter{T: g.t, Prefix: "versitygw: "}
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	for range 100 {
		if c, err := net.Dial("tcp", g.addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("versitygw did not listen on %s", g.addr)
}

// restart kills the server, keeps it down for d and starts it again.
func (g *gateway) restart(d time.Duration) {
	g.cmd.Process.Kill()
	g.cmd.Wait()
	g.t.Logf("s3 server down for %v", d)
	time.Sleep(d)
	g.start()
}
