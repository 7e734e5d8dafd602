package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// connParams are the connection attributes the source and the sink share.
var connParams = []stdlib.Param{
	{Name: "endpoint", Type: stdlib.String, Required: true, Doc: `the server: "host:port" or a URL ("https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:7070"); https (or a tls block) connects with TLS`},
	{Name: "bucket", Type: stdlib.String, Required: true, Doc: "the bucket the objects are in"},
	{Name: "access_key", Type: stdlib.String, Secret: true, Doc: "access key id; with secret_key, requests are signed (AWS Signature V4); without, they are anonymous"},
	{Name: "secret_key", Type: stdlib.String, Secret: true, Doc: "secret access key"},
	{Name: "session_token", Type: stdlib.String, Secret: true, Doc: "session token of temporary credentials"},
	{Name: "region", Type: stdlib.String, Default: "", Doc: "the bucket's region (us-east-1 when empty and the server does not say)"},
	{Name: "path_style", Type: stdlib.Bool, Default: false, Doc: "address the bucket in the path (http://host/bucket/key), as most S3-compatible servers want; false lets the client choose (virtual-hosted on AWS)"},
	{Name: "tls", Type: stdlib.Block(
		stdlib.Param{Name: "ca", Type: stdlib.String, Doc: "CA certificates to verify the server with: a PEM file path or PEM text"},
		stdlib.Param{Name: "server_name", Type: stdlib.String, Doc: "name to verify the server certificate against"},
		stdlib.Param{Name: "insecure_skip_verify", Type: stdlib.Bool, Default: false, Doc: "do not verify the server certificate (unsafe)"},
	), Doc: "connect with TLS (also implied by an https endpoint)"},
	retry.Param,
}

// checkConn validates the connection attributes.
func checkConn(attrs map[string]any) []stdlib.AttrError {
	errs := retry.Check(attrs)
	if e, ok := attrs["endpoint"].(string); ok && !strings.Contains(e, "${") {
		if _, _, err := parseEndpoint(e); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "endpoint", Message: err.Error()})
		}
	}
	if b, ok := attrs["bucket"].(string); ok && !strings.Contains(b, "${") && (len(b) < 3 || len(b) > 63 || strings.ContainsAny(b, "/ ")) {
		errs = append(errs, stdlib.AttrError{Attr: "bucket", Message: fmt.Sprintf("bucket %q is not a bucket name (3 to 63 characters, no slash)", b)})
	}
	_, ak := attrs["access_key"]
	_, sk := attrs["secret_key"]
	if ak != sk {
		errs = append(errs, stdlib.AttrError{Attr: "secret_key", Message: "access_key and secret_key must be set together"})
	}
	return errs
}

// parseEndpoint splits an endpoint into host[:port] and whether its
// scheme asks for TLS.
func parseEndpoint(e string) (host string, secure bool, err error) {
	if !strings.Contains(e, "://") {
		if e == "" || strings.ContainsAny(e, "/?#") {
			return "", false, fmt.Errorf("endpoint %q is not host:port or a URL", e)
		}
		return e, false, nil
	}
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", false, fmt.Errorf("endpoint %q is not a URL of a server (scheme and host, no path)", e)
	}
	switch u.Scheme {
	case "http":
	case "https":
		secure = true
	default:
		return "", false, fmt.Errorf("endpoint %q: scheme must be http or https", e)
	}
	return u.Host, secure, nil
}

// conn is a client of one bucket.
type conn struct {
	cli     *minio.Client
	core    *minio.Core
	bucket  string
	stage   string
	backoff *retry.Backoff
}

// newBackoff returns a Backoff like c's, for a goroutine of its own (a
// Backoff is not safe for concurrent use).
func (c *conn) newBackoff() *retry.Backoff {
	return retry.New(c.backoff.Timeout, c.backoff.Log, c.backoff.What)
}

// newConn builds the client of a stage's connection attributes; it does
// not connect.
func newConn(cfg stdlib.Config, what string) (*conn, error) {
	host, secure, err := parseEndpoint(cfg.String("endpoint"))
	if err != nil {
		return nil, err
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	if t, ok := cfg.Block("tls"); ok {
		secure = true
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.String("server_name"), InsecureSkipVerify: t.Bool("insecure_skip_verify")}
		if ca := t.String("ca"); ca != "" {
			pem := []byte(ca)
			if !strings.Contains(ca, "-----BEGIN") {
				if pem, err = os.ReadFile(ca); err != nil {
					return nil, fmt.Errorf("tls: ca: %w", err)
				}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("tls: ca: no PEM certificate found")
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	var creds *credentials.Credentials
	if ak := cfg.String("access_key"); ak != "" {
		creds = credentials.NewStaticV4(ak, cfg.String("secret_key"), cfg.String("session_token"))
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	lookup := minio.BucketLookupAuto
	if cfg.Bool("path_style") {
		lookup = minio.BucketLookupPath
	}
	opts := &minio.Options{
		Creds: creds, Secure: secure, Region: cfg.String("region"), BucketLookup: lookup,
		Transport: tr,
		// Retries are paced by retry_timeout (conn.do), not by the client.
		MaxRetries: 1,
	}
	core, err := minio.NewCore(host, opts)
	if err != nil {
		return nil, err
	}
	return &conn{cli: core.Client, core: core, bucket: cfg.String("bucket"), stage: cfg.Stage,
		backoff: retry.New(cfg.Duration(retry.Param.Name), cfg.Logger, what)}, nil
}

// do runs op, retrying it with backoff while the server is unreachable
// or answers that it is unavailable, until retry_timeout.
func (c *conn) do(ctx context.Context, op func() error) error {
	return retry.Do(ctx, c.backoff, retriable, op)
}

// retriable reports whether err is worth another attempt: the network,
// or a server error or throttling answer (5xx, SlowDown).
func retriable(err error) bool {
	var ue *url.Error
	if retry.Network(err) || errors.As(err, &ue) && ue.Timeout() && !errors.Is(err, context.DeadlineExceeded) {
		return true // the network, or a server that stopped answering
	}
	// minio-go replaces the EOF of a connection the server closed by
	// this text.
	if errors.As(err, &ue) && strings.Contains(ue.Err.Error(), "Connection closed by foreign host") {
		return true
	}
	r := minio.ToErrorResponse(err)
	return r.StatusCode >= 500 || r.StatusCode == http.StatusTooManyRequests || r.Code == "SlowDown" || r.Code == "RequestTimeout"
}

// notFound reports whether err says the object does not exist.
func notFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound
}

// checkBucket fails unless the bucket exists and the credentials reach it.
func (c *conn) checkBucket(ctx context.Context) error {
	var ok bool
	err := c.do(ctx, func() (err error) { ok, err = c.cli.BucketExists(ctx, c.bucket); return err })
	if err != nil {
		return fmt.Errorf("bucket %q: %v", c.bucket, err)
	}
	if !ok {
		return fmt.Errorf("bucket %q does not exist", c.bucket)
	}
	return nil
}
