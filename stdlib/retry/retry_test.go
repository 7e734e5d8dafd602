package retry

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBackoffGivesUpAfterTimeout(t *testing.T) {
	var logs bytes.Buffer
	b := New(time.Second, slog.New(slog.NewTextHandler(&logs, nil)), "test conn")
	cause := errors.New("connection refused")
	start := time.Now()
	var err error
	attempts := 0
	for err == nil {
		attempts++
		err = b.Wait(t.Context(), cause)
	}
	took := time.Since(start)
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", attempts)) ||
		!strings.Contains(err.Error(), "retry_timeout 1s") {
		t.Fatalf("error %q: want the cause, the attempts and the timeout", err)
	}
	// The waits end within the timeout; timers may fire a little late.
	if took > time.Second+50*time.Millisecond || took < 300*time.Millisecond {
		t.Fatalf("gave up after %v, want within retry_timeout (1s) and not long before", took)
	}
	// One warning per attempt that waited, with its delay.
	if n := strings.Count(logs.String(), `msg="test conn: retrying"`); n != attempts-1 || !strings.Contains(logs.String(), "in=") {
		t.Fatalf("%d retry lines for %d waits:\n%s", n, attempts-1, logs.String())
	}
}

func TestBackoffDelaysGrowCappedWithJitter(t *testing.T) {
	b := Backoff{Timeout: time.Hour}
	seen := map[time.Duration]bool{}
	for n := range 40 {
		bound := min(first<<min(n, 10), maxDelay)
		d := b.next()
		if d < bound/2 || d > bound {
			t.Fatalf("delay %d is %v, want within [%v, %v]", n, d, bound/2, bound)
		}
		seen[d] = true
	}
	if len(seen) < 20 {
		t.Fatalf("%d distinct delays in 40: no jitter", len(seen))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Wait(ctx, errors.New("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context: %v", err)
	}
}

func TestDoResetsAfterSuccess(t *testing.T) {
	// Three failures wait at most 100+200+400ms: within 1s. Six in a row
	// (no reset between the two streaks) would not fit.
	b := New(time.Second, nil, "")
	for _, cause := range []error{io.ErrUnexpectedEOF, syscall.ECONNREFUSED} {
		fails := 3
		err := Do(t.Context(), b, Network, func() error {
			if fails > 0 {
				fails--
				return cause
			}
			return nil
		})
		if err != nil || b.Failing() {
			t.Fatalf("Do = %v, failing %v; want success and a reset backoff", err, b.Failing())
		}
	}
	bad := errors.New("syntax error")
	calls := 0
	if err := Do(t.Context(), b, Network, func() error { calls++; return bad }); err != bad || calls != 1 {
		t.Fatalf("Do on an error that is not retried: %v after %d calls", err, calls)
	}
}

func TestNetwork(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{refused, true},
		{fmt.Errorf("fetch: %w", io.ErrUnexpectedEOF), true},
		{io.EOF, true},
		{syscall.ECONNRESET, true},
		{net.ErrClosed, true},
		{errors.New("write: broken pipe"), true},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, false},
		{fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: errors.New("unknown authority")}), false},
		{errors.New("relation does not exist"), false},
		{nil, false},
	} {
		if got := Network(c.err); got != c.want {
			t.Errorf("Network(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestParam(t *testing.T) {
	if Param.Default != DefaultTimeout || Param.Name != "retry_timeout" {
		t.Fatalf("Param %+v", Param)
	}
	if errs := Check(map[string]any{"retry_timeout": -time.Second}); len(errs) != 1 || errs[0].Attr != "retry_timeout" {
		t.Fatalf("Check(negative) = %v", errs)
	}
	if errs := Check(map[string]any{"retry_timeout": time.Second}); len(errs) != 0 {
		t.Fatalf("Check(1s) = %v", errs)
	}
}

func TestZeroTimeoutGivesUpAtOnce(t *testing.T) {
	cause := errors.New("connection refused")
	if err := New(0, nil, "").Wait(t.Context(), cause); !errors.Is(err, cause) || !strings.Contains(err.Error(), "gave up after 1 attempts") {
		t.Fatalf("Wait with retry_timeout 0 = %v, want giving up at once", err)
	}
}
