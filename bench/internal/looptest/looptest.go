// Package looptest checks a hand-written baseline's transform; only the
// baselines' tests import it.
package looptest

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// Transform checks transform on two records, of which it keeps one
// (user renamed customer, its region added), and on a line that is not
// JSON, which it refuses.
func Transform(t *testing.T, transform func(io.Reader, io.Writer) (int, error)) {
	t.Helper()
	in := `{"id":1,"user":"u1","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}
{"id":2,"user":"u2","amount":10.5,"country":"DE","event":"purchase","ts":"2024-01-01T00:00:02Z"}
`
	var out bytes.Buffer
	n, err := transform(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"amount":79.19,"country":"NL","customer":"u1","event":"purchase","id":1,"region":"EU","ts":"2024-01-01T00:00:01Z"}` + "\n"
	if n != 1 || out.String() != want {
		t.Fatalf("got %d records:\n%s\nwant\n%s", n, out.String(), want)
	}
	if _, err := transform(strings.NewReader("{nope\n"), &out); err == nil {
		t.Error("bad input accepted")
	}
}
