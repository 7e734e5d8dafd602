package proctest

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// FileIDs returns the id field of every line of a JSON lines file (none
// when it does not exist yet).
func FileIDs(t testing.TB, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, r.ID)
	}
	return out
}

// WaitSettled polls count until it reaches want and then stays unchanged
// for 2 s (nothing more is coming), failing t after timeout.
func WaitSettled(t testing.TB, what string, count func() int, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		n := count()
		if n != last {
			last, since = n, time.Now()
		} else if n >= want && time.Since(since) > 2*time.Second {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %d after %v, want %d", what, last, timeout, want)
}

// ExactlyOnce fails t unless ids holds every id from to to-1 once and
// no other.
func ExactlyOnce(t testing.TB, what string, from, to int64, ids []int64) {
	t.Helper()
	got := TallyIDs(Want(from, to), ids)
	if got.Missing+got.Doubled+got.Extra > 0 {
		t.Fatalf("%s: %d records, %d missing, %d doubled, %d unexpected", what, got.Read, got.Missing, got.Doubled, got.Extra)
	}
	t.Logf("%s: all %d records exactly once", what, to-from)
}
