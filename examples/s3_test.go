package examples

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/parquet-go/parquet-go"

	"pipe.dev/pipe/exec"
	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// TestKafkaToS3Runs runs examples/kafka_to_s3.pipe from a development
// broker into a bucket of the S3-compatible test server (PIPE_S3_ENDPOINT,
// default 127.0.0.1:9123, as .ci/s3server starts it) and reads the Parquet
// objects back: every event once, under its day and country prefix.
func TestKafkaToS3Runs(t *testing.T) {
	endpoint := os.Getenv("PIPE_S3_ENDPOINT")
	if endpoint == "" {
		endpoint = "127.0.0.1:9123"
	}
	ak, sk := "pipe-test", "pipe-test-secret"
	if v := os.Getenv("PIPE_S3_ACCESS_KEY"); v != "" {
		ak, sk = v, os.Getenv("PIPE_S3_SECRET_KEY")
	}
	cli, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(ak, sk, ""), BucketLookup: minio.BucketLookupPath, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	_, err = cli.ListBuckets(ctx)
	cancel()
	if err != nil {
		msg := fmt.Sprintf("no S3-compatible server at %s (start one with .ci/s3server): %v", endpoint, err)
		testkit.Missing(t, "%s", msg)
	}
	bucket := fmt.Sprintf("k2s3-%d", rand.IntN(1e9))
	if err := cli.MakeBucket(t.Context(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for o := range cli.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			cli.RemoveObject(ctx, bucket, o.Key, minio.RemoveObjectOptions{})
		}
		cli.RemoveBucket(ctx, bucket)
	})

	p := examplePlan(t, "kafka_to_s3.pipe")
	b, err := devbroker.Start(t.Context(), devbroker.Options{Topics: []devbroker.Topic{{Name: "in", Partitions: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for k, v := range map[string]string{"KAFKA_BROKERS": b.Addr(), "IN_TOPIC": "in", "GROUP": "k2s3", "S3_ENDPOINT": "http://" + endpoint,
		"S3_BUCKET": bucket, "S3_ACCESS_KEY": ak, "S3_SECRET_KEY": sk} {
		t.Setenv(k, v)
	}
	const n = 400
	produceEvents(t, b.Addr(), "in", 0, n)
	runCtx, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	status := func(s exec.Snapshot) {
		for _, st := range s.Stages {
			if st.Name == "lake" && st.Out == n && s.Checkpoint > 0 {
				stop()
			}
		}
	}
	if err := exec.Run(runCtx, p, &exec.Config{StateDir: t.TempDir(), Status: status, StatusInterval: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	type event struct {
		ID      int64  `parquet:"id"`
		Country string `parquet:"country"`
	}
	seen := map[int64]int{}
	for o := range cli.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: "dt=", Recursive: true}) {
		if !strings.HasPrefix(o.Key, "dt=2024-01-01/country=NL/events.") || !strings.HasSuffix(o.Key, ".parquet") {
			t.Fatalf("object %s is not under dt=2024-01-01/country=NL/ nor named by its positions", o.Key)
		}
		obj, err := cli.GetObject(t.Context(), bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := parquet.Read[event](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		for _, r := range rows {
			seen[r.ID]++
		}
	}
	for id := range int64(n) {
		if seen[id] != 1 {
			t.Fatalf("event %d is in the objects %d times, want once (%d distinct events)", id, seen[id], len(seen))
		}
	}
}
