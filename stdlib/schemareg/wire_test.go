package schemareg

import (
	"errors"
	"slices"
	"testing"
)

func TestFrame(t *testing.T) {
	b := append(Append(nil, 258), "payload"...)
	if string(b[:5]) != "\x00\x00\x00\x01\x02" {
		t.Fatalf("frame % x", b[:5])
	}
	id, p, err := Parse(b)
	if err != nil || id != 258 || string(p) != "payload" {
		t.Fatalf("parse: %d %q %v", id, p, err)
	}
	for _, bad := range []string{"", "\x00\x00\x01", "\x01\x00\x00\x00\x01x"} {
		if _, _, err := Parse([]byte(bad)); !errors.Is(err, ErrNotFramed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestProtobufIndexes(t *testing.T) {
	for _, idx := range [][]int{{0}, {1}, {2, 0, 3}} {
		b := append(AppendIndexes(nil, idx), 'x')
		got, rest, err := ParseIndexes(b)
		if err != nil || !slices.Equal(got, idx) || string(rest) != "x" {
			t.Errorf("%v: got %v %q %v", idx, got, rest, err)
		}
	}
	if b := AppendIndexes(nil, []int{0}); len(b) != 1 || b[0] != 0 {
		t.Errorf("[0] encodes as % x, want 00", b)
	}
}

func TestSubject(t *testing.T) {
	for _, c := range []struct {
		strategy string
		key      bool
		want     string
	}{
		{TopicName, false, "t-value"}, {TopicName, true, "t-key"},
		{RecordName, false, "ns.R"}, {TopicRecordName, true, "t-ns.R"},
	} {
		if got := Subject(c.strategy, "t", "ns.R", c.key); got != c.want {
			t.Errorf("%s key=%v: %s, want %s", c.strategy, c.key, got, c.want)
		}
	}
}
