package stdlib

import (
	"reflect"
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	attrs := map[string]any{
		"n": int64(1), "zero": int64(0), "neg": int64(-3),
		"wait": time.Millisecond, "nowait": time.Duration(0), "back": -time.Second,
		"name": "x",
	}
	got := Positive(attrs, "n", "zero", "neg", "wait", "nowait", "back", "name", "absent")
	want := []AttrError{
		{Attr: "zero", Message: "zero must be positive"},
		{Attr: "neg", Message: "neg must be positive"},
		{Attr: "nowait", Message: "nowait must be positive"},
		{Attr: "back", Message: "back must be positive"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Positive:\n got %+v\nwant %+v", got, want)
	}
}
