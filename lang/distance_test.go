package lang

import "testing"

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"check", "check", 0},
		{"", "run", 3},
		{"chek", "check", 1},    // a rune missing
		{"chekc", "check", 1},   // two adjacent runes swapped
		{"sinc", "sink", 1},     // a rune changed
		{"über", "uber", 1},     // counted in runes, not bytes
		{"transform", "fmt", 8}, // mostly different
		{"ab", "ba", 1},         // a swap is one edit
		{"abc", "ca", 3},        // no transposition of runes with one between
	} {
		if got := EditDistance(c.a, c.b); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := EditDistance(c.b, c.a); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d (symmetric)", c.b, c.a, got, c.want)
		}
	}
}
