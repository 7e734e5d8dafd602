// Package retry is how connectors survive a server that is not up yet or a
// connection that breaks: they retry with capped exponential backoff and
// jitter, log each attempt once with the delay before the next, and fail
// the stage only once the retry_timeout attribute ([Param]) has passed
// since the first failure in a row.
//
// Role: a run-time helper of the connector packages (kafka, postgres);
// the compiler sees only [Param]. What is worth retrying and what state a
// connector keeps across a reconnect (positions, the open transaction)
// stay the connector's business; this package only paces and bounds the
// attempts.
//
// The delay before attempt n+1 is drawn from [d/2, d] with d = 100ms·2^n,
// capped at 5s.
package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"pipe.dev/pipe/stdlib"
)

// DefaultTimeout is retry_timeout's default.
const DefaultTimeout = 5 * time.Minute

const (
	first    = 100 * time.Millisecond
	maxDelay = 5 * time.Second
)

// Param is the retry_timeout attribute every connector takes.
var Param = stdlib.Param{Name: "retry_timeout", Type: stdlib.Duration, Default: DefaultTimeout,
	Doc: "how long to keep retrying an unreachable server or a lost connection (at start too) before the stage fails; 0 fails at once"}

// Check reports a negative retry_timeout.
func Check(attrs map[string]any) []stdlib.AttrError {
	if d, ok := attrs[Param.Name].(time.Duration); ok && d < 0 {
		return []stdlib.AttrError{{Attr: Param.Name, Message: "retry_timeout must not be negative"}}
	}
	return nil
}

// Backoff paces the attempts of one connection (or one operation). A
// connector takes its Timeout from the checked retry_timeout attribute
// (cfg.Duration(Param.Name)). A Backoff is not safe for concurrent use.
type Backoff struct {
	Timeout time.Duration // how long after the first failure to keep trying; 0: not at all
	Log     *slog.Logger  // nil: attempts are not logged
	What    string        // names the connection in log lines: "kafka source"

	n     int       // failures so far
	since time.Time // of the first failure; zero if none
}

// New returns a Backoff for timeout, logging to log as what.
func New(timeout time.Duration, log *slog.Logger, what string) *Backoff {
	return &Backoff{Timeout: timeout, Log: log, What: what}
}

// Wait is called after attempt n failed with cause: it logs the failure
// with the delay before the next attempt and sleeps that long. It returns
// an error wrapping cause, without sleeping, when the next attempt would
// start after the deadline, and ctx's error when ctx ends first.
func (b *Backoff) Wait(ctx context.Context, cause error) error {
	timeout := b.Timeout
	now := time.Now()
	if b.since.IsZero() {
		b.since = now
	}
	d := b.next()
	if now.Add(d).Sub(b.since) > timeout {
		return fmt.Errorf("gave up after %d attempts in %v (retry_timeout %v): %w",
			b.n, now.Sub(b.since).Round(time.Millisecond), timeout, cause)
	}
	if b.Log != nil {
		b.Log.Warn(b.What+": retrying", "attempt", b.n, "in", d.Round(time.Millisecond), "error", cause.Error())
	}
	return Sleep(ctx, d)
}

// Sleep waits d, or until ctx ends (its error); with d <= 0 it returns at
// once, ctx's error if it has ended.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// next counts a failure and returns the delay before the next attempt.
func (b *Backoff) next() time.Duration {
	d := min(first<<min(b.n, 10), maxDelay)
	b.n++
	return d/2 + rand.N(d/2+1)
}

// Reset forgets the failures after a success: the next failure starts a
// new deadline and the first delay again.
func (b *Backoff) Reset() {
	if b.n > 0 && b.Log != nil {
		b.Log.Info(b.What+": reconnected", "attempts", b.n)
	}
	b.n, b.since = 0, time.Time{}
}

// Failing reports whether failures have been seen since the last Reset.
func (b *Backoff) Failing() bool { return b.n > 0 }

// Do runs op until it succeeds, fails with an error retriable does not
// accept, ctx ends or b gives up; it resets b after a success.
func Do(ctx context.Context, b *Backoff, retriable func(error) bool, op func() error) error {
	for {
		err := op()
		if err == nil {
			b.Reset()
			return nil
		}
		if ctx.Err() != nil || !retriable(err) {
			return err
		}
		if werr := b.Wait(ctx, err); werr != nil {
			return werr
		}
	}
}

// Network reports whether err is a connection that could not be made or
// broke (refused, reset, closed, timed out, cut short): a failure of the
// network or of the server's availability, not of the request. A
// cancelled or expired context is not one, nor is a TLS handshake that
// failed over a certificate: retrying would not change it.
func Network(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || badTLS(err) {
		return false
	}
	// Not net.Error: too many error types have Timeout and Temporary.
	var (
		op  *net.OpError
		dns *net.DNSError
	)
	if errors.As(err, &op) || errors.As(err, &dns) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	// Some clients flatten the cause into text.
	msg := err.Error()
	for _, s := range []string{"unexpected EOF", "broken pipe", "connection reset", "connection refused", "use of closed network connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// badTLS reports whether err is a TLS handshake refused by either side.
func badTLS(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" { // the peer's TLS alert
		return true
	}
	var (
		alert  tls.AlertError
		verify *tls.CertificateVerificationError
		header tls.RecordHeaderError
		ua     x509.UnknownAuthorityError
		inv    x509.CertificateInvalidError
		host   x509.HostnameError
	)
	return errors.As(err, &alert) || errors.As(err, &verify) || errors.As(err, &header) ||
		errors.As(err, &ua) || errors.As(err, &inv) || errors.As(err, &host)
}
