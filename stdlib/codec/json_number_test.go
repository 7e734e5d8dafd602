package codec

import (
	"encoding/json"
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// numberSamples returns decimal numbers of many shapes: few decimals (the
// fast paths), many digits, exponents, and values at the paths' limits.
func numberSamples() []string {
	out := []string{"0.0", "-0.0", "1.5", "79.19", "-79.19", "0.05", "1e3", "1E-3", "12.5e2", "123456789012345.0",
		"1234567890123456.0", "0.1", "0.3", "1.1", "9007199254740993.0", "1e22", "1e23", "1e-22", "1e-23",
		"3.141592653589793", "2.2250738585072014e-308", "1.7976931348623157e308", "5e-324", "0.000001", "100.000"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var s string
		switch r.IntN(4) {
		case 0:
			s = strconv.FormatFloat(math.Floor((1+99*r.Float64())*100)/100, 'f', -1, 64)
		case 1:
			s = strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(30)-15)), 'g', -1, 64)
		case 2:
			s = strconv.Itoa(r.IntN(1000000)) + "." + strconv.Itoa(r.IntN(1000000))
		default:
			s = strconv.FormatFloat(math.Float64frombits(r.Uint64()), 'g', -1, 64)
		}
		out = append(out, s)
	}
	return out
}

func TestFastFloatMatchesParseFloat(t *testing.T) {
	for _, s := range numberSamples() {
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(want, 0) || math.IsNaN(want) {
			continue
		}
		d := jsonDecoder{s: s, a: &Arena{}}
		v, err := d.number()
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		got, isFloat := v.(float64)
		if !isFloat {
			if n, ok := v.(int64); ok && float64(n) == want {
				continue
			}
			t.Fatalf("%s: decoded %T %v, want float64 %v", s, v, v, want)
		}
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%s: decoded %v, want %v", s, got, want)
		}
	}
}

func TestAppendFloatMatchesStrconv(t *testing.T) {
	for _, s := range numberSamples() {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			continue
		}
		for _, v := range []float64{f, -f, math.Nextafter(f, 0), math.Nextafter(f, math.Inf(1))} {
			if math.IsInf(v, 0) {
				continue
			}
			got, err := appendFloat(nil, v, 64)
			if err != nil {
				t.Fatal(err)
			}
			if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
				continue // exponent form, not the decimal path
			}
			if want := strconv.FormatFloat(v, 'f', -1, 64); string(got) != want {
				t.Fatalf("%v: encoded %s, want %s", v, got, want)
			}
		}
	}
}

func TestStopBytes(t *testing.T) {
	stop := func(c byte) bool { return c < 0x20 || c >= 0x80 || c == '"' || c == '\\' }
	first := func(b []byte) int { // the index stopBytes must point at, 8 for none
		for i, c := range b {
			if stop(c) {
				return i
			}
		}
		return 8
	}
	check := func(b []byte) {
		t.Helper()
		got := 8
		if m := stopBytes(loadWord(string(b), 0)); m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if want := first(b); got != want {
			t.Fatalf("%q: stopBytes points at %d, want %d", b, got, want)
		}
	}
	for c := range 256 {
		for pos := range 8 {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			check(b)
			// A byte after it that stops too, or one that carries a borrow.
			for _, later := range []byte{0, 0x1f, '"', '\\', 0x80, 0xff, 0x21, 0x01} {
				for p2 := pos + 1; p2 < 8; p2++ {
					b2 := append([]byte(nil), b...)
					b2[p2] = later
					check(b2)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var b [8]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		check(b[:])
	}
}

func TestStringsAcrossWords(t *testing.T) {
	c := newJSON(nil)
	for _, s := range []string{"", "a", "abcdefgh", "abcdefghi", "0123456789abcdef\"x", "abcdefg\\\"hijklmnop", "abcdefgh\u00e9ijklmnop",
		"abcdefghijklmn\u2028op", "abcdefgh\x01ijklmnop", "\xffabcdefghijkl"} {
		line, err := c.Append(nil, map[string]any{"k": s})
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Decode(line)
		if err != nil {
			t.Fatalf("%q: %s: %v", s, line, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if m["k"] != want {
			t.Fatalf("%q: encoded %s, decoded %q", s, line, m["k"])
		}
		var std map[string]string
		if err := json.Unmarshal(line, &std); err != nil || std["k"] != want {
			t.Fatalf("%q: encoded %s, encoding/json reads %q (%v)", s, line, std["k"], err)
		}
	}
}

// TestNumberGrammar checks that the decoder takes exactly the numbers
// encoding/json takes, with the value it gives.
func TestNumberGrammar(t *testing.T) {
	for _, s := range []string{"0", "-0", "01", "-01", "1.", "1.e3", ".5", "-", "1e", "1e+", "1E-", "1.5e3", "1.5E+3",
		"-1.25e-2", "12", "1x", "0.0e0", "9223372036854775807", "-9223372036854775808", "1.5.2", "1ee2"} {
		var want any
		werr := json.Unmarshal([]byte(s), &want)
		got, err := decodeValue(s, false)
		if (err == nil) != (werr == nil) {
			t.Errorf("%q: decode err %v, encoding/json err %v", s, err, werr)
			continue
		}
		if err != nil {
			continue
		}
		var f float64
		switch g := got.(type) {
		case int64:
			f = float64(g)
		case float64:
			f = g
		default:
			t.Errorf("%q: decoded %T", s, got)
			continue
		}
		if f != want.(float64) {
			t.Errorf("%q: decoded %v, want %v", s, got, want)
		}
	}
}
