package s3

import (
	"net"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// TestRetriableClosedConnection: a server that closes the connection
// without answering (as one killed in the middle of an upload) is worth
// another attempt; minio-go reports it in a text of its own.
func TestRetriableClosedConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			c.Read(buf)
			c.Close()
		}
	}()
	cli, err := minio.New(l.Addr().String(), &minio.Options{Creds: credentials.NewStaticV4("a", "b", ""),
		BucketLookup: minio.BucketLookupPath, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.BucketExists(t.Context(), "bucket")
	if err == nil {
		t.Fatal("no error from a server that closes the connection")
	}
	if !retriable(err) {
		t.Fatalf("not retried: %v", err)
	}
	t.Log(err)
}
