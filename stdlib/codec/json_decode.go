package codec

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// jsonDecoder parses one JSON document held in s. Strings without escapes
// are substrings of s, so a message costs one string allocation for all its
// text.
type jsonDecoder struct {
	s     string
	i     int
	depth int
	a     *Arena // boxes scalar values
	// keep keeps invalid UTF-8 in strings as it is, and a lone surrogate
	// escape as its three-byte (WTF-8) sequence; otherwise both are errors.
	keep bool
	// names are the top-level field names expected (fields), in order;
	// named counts those found.
	names []string
	named int
}

const maxDepth = 1000

// decodeObject parses data, which must hold exactly one JSON object. With
// owned set, strings of the result alias data; keep is jsonDecoder.keep.
func decodeObject(data []byte, a *Arena, owned, keep bool) (map[string]any, error) {
	d := jsonDecoder{a: a, keep: keep}
	if owned && len(data) > 0 {
		d.s = unsafe.String(&data[0], len(data))
	} else {
		d.s = a.Text(data)
	}
	d.skipSpace()
	if d.i >= len(d.s) {
		return nil, errors.New("json: empty message")
	}
	if d.s[d.i] != '{' {
		return nil, fmt.Errorf("json: message is not an object (starts with %q)", d.s[d.i])
	}
	m, err := d.object()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.i < len(d.s) {
		return nil, d.errorf("unexpected %q after the object", d.s[d.i])
	}
	return m, nil
}

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("json: offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

// invalidUTF8 is the error of invalid UTF-8 at offset i of a string.
func (d *jsonDecoder) invalidUTF8(i int, what string) error {
	d.i = i
	return fmt.Errorf("json: offset %d: %w%s in a string", i, ErrInvalidUTF8, what)
}

func (d *jsonDecoder) skipSpace() {
	// Every byte JSON counts as space is at most ' ': one comparison
	// settles the usual case of none.
	for d.i < len(d.s) && d.s[d.i] <= ' ' {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value() (any, error) {
	d.skipSpace()
	if d.i >= len(d.s) {
		return nil, d.errorf("unexpected end of input")
	}
	switch c := d.s[d.i]; c {
	case '"':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return d.a.String(s), nil
	case '{':
		return d.object()
	case '[':
		return d.array()
	case 't':
		return d.literal("true", true)
	case 'f':
		return d.literal("false", false)
	case 'n':
		return d.literal("null", nil)
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number()
		}
		return nil, d.errorf("unexpected %q", c)
	}
}

func (d *jsonDecoder) literal(word string, v any) (any, error) {
	if len(d.s)-d.i >= len(word) && d.s[d.i:d.i+len(word)] == word {
		d.i += len(word)
		return v, nil
	}
	return nil, d.errorf("invalid literal")
}

func (d *jsonDecoder) object() (map[string]any, error) {
	m := make(map[string]any, 8)
	more, err := d.open('}')
	for more && err == nil {
		var k string
		if k, err = d.key(); err != nil {
			return nil, err
		}
		if m[k], err = d.value(); err != nil {
			return nil, err
		}
		more, err = d.next('}', "object")
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (d *jsonDecoder) array() ([]any, error) {
	l := []any{}
	more, err := d.open(']')
	for more && err == nil {
		var v any
		if v, err = d.value(); err != nil {
			return nil, err
		}
		l = append(l, v)
		more, err = d.next(']', "array")
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

// open enters the object or array whose opening byte is at d.i and
// reports whether it has members (false when closing follows at once).
func (d *jsonDecoder) open(closing byte) (bool, error) {
	d.depth++
	if d.depth > maxDepth {
		return false, d.errorf("nesting deeper than %d", maxDepth)
	}
	d.i++ // '{' or '['
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == closing {
		d.i++
		d.depth--
		return false, nil
	}
	return true, nil
}

// key reads an object's key and the ':' after it.
func (d *jsonDecoder) key() (string, error) {
	d.skipSpace()
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		return "", d.errorf("expected a string key")
	}
	k, err := d.str()
	if err != nil {
		return "", err
	}
	return k, d.colon(k)
}

// colon reads the ':' after key k.
func (d *jsonDecoder) colon(k string) error {
	d.skipSpace()
	if d.i >= len(d.s) || d.s[d.i] != ':' {
		return d.errorf("expected ':' after key %q", k)
	}
	d.i++
	return nil
}

// next reads what follows a member of an object or array (in): a ','
// (another member follows: true) or its closing byte, which leaves it.
func (d *jsonDecoder) next(closing byte, in string) (bool, error) {
	if d.i < len(d.s) && d.s[d.i] == ',' {
		d.i++
		return true, nil
	}
	d.skipSpace()
	if d.i >= len(d.s) {
		return false, d.errorf("unexpected end of input in %s", in)
	}
	switch d.s[d.i] {
	case ',':
		d.i++
		return true, nil
	case closing:
		d.i++
		d.depth--
		return false, nil
	}
	return false, d.errorf("expected ',' or '%c' in %s, found %q", closing, in, d.s[d.i])
}

// str parses a string starting at the opening quote.
func (d *jsonDecoder) str() (string, error) {
	start := d.i + 1
	j := start
	for j+8 <= len(d.s) {
		if m := stopBytes(loadWord(d.s, j)); m != 0 {
			j += bits.TrailingZeros64(m) >> 3 // the first byte to look at
			if d.s[j] == '"' {
				d.i = j + 1
				return d.s[start:j], nil
			}
			break
		}
		j += 8
	}
	for ; j < len(d.s); j++ {
		c := d.s[j]
		if !strStop[c] {
			continue
		}
		switch {
		case c == '"':
			d.i = j + 1
			return d.s[start:j], nil
		case c == '\\':
			return d.strEscaped(start, j)
		case c < 0x20:
			d.i = j
			return "", d.errorf("control character in string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(d.s[j:])
			if r == utf8.RuneError && size == 1 && !d.keep {
				return "", d.invalidUTF8(j, "")
			}
			j += size - 1
		}
	}
	d.i = len(d.s)
	return "", d.errorf("unterminated string")
}

// strEscaped finishes a string holding escapes; s[start:j] is its plain
// prefix.
func (d *jsonDecoder) strEscaped(start, j int) (string, error) {
	b := make([]byte, 0, j-start+16)
	b = append(b, d.s[start:j]...)
	for j < len(d.s) {
		c := d.s[j]
		switch {
		case c == '"':
			d.i = j + 1
			return string(b), nil
		case c < 0x20:
			d.i = j
			return "", d.errorf("control character in string")
		case c == '\\':
			if j+1 >= len(d.s) {
				d.i = j
				return "", d.errorf("unterminated string")
			}
			e := d.s[j+1]
			j += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(d.s, j)
				if !ok {
					d.i = j
					return "", d.errorf("invalid \\u escape")
				}
				j += 4
				if utf16.IsSurrogate(r) {
					r2, ok := rune(-1), false
					if j+6 <= len(d.s) && d.s[j] == '\\' && d.s[j+1] == 'u' {
						r2, ok = hex4(d.s, j+2)
					}
					if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
						r = dec
						j += 6
					} else if !d.keep {
						return "", d.invalidUTF8(j-6, fmt.Sprintf(" (lone surrogate \\u%04x)", r))
					} else {
						b = append(b, 0xe0|byte(r>>12), 0x80|byte(r>>6)&0x3f, 0x80|byte(r)&0x3f)
						continue
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				d.i = j - 1
				return "", d.errorf("invalid escape %q", "\\"+string(e))
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			j++
		default:
			r, size := utf8.DecodeRuneInString(d.s[j:])
			if r == utf8.RuneError && size == 1 && !d.keep {
				return "", d.invalidUTF8(j, "")
			}
			b = append(b, d.s[j:j+size]...)
			j += size
		}
	}
	d.i = len(d.s)
	return "", d.errorf("unterminated string")
}

func hex4(s string, j int) (rune, bool) {
	if j+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[j : j+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// digits returns the end of the run of decimal digits at j, and whether
// it has any.
func (d *jsonDecoder) digits(j int) (int, bool) {
	i := j
	for i < len(d.s) && d.s[i] >= '0' && d.s[i] <= '9' {
		i++
	}
	return i, i > j
}

// number parses a JSON number: int64 when it has no fraction or exponent
// and fits, float64 otherwise.
func (d *jsonDecoder) number() (any, error) {
	start := d.i
	j := d.i
	if d.s[j] == '-' {
		j++
	}
	intStart := j
	j, ok := d.digits(j)
	if !ok || (d.s[intStart] == '0' && j-intStart > 1) {
		d.i = start
		return nil, d.errorf("invalid number")
	}
	isInt := true
	if j < len(d.s) && d.s[j] == '.' {
		isInt = false
		j, ok = d.digits(j + 1)
	}
	if ok && j < len(d.s) && (d.s[j] == 'e' || d.s[j] == 'E') {
		isInt = false
		j++
		if j < len(d.s) && (d.s[j] == '+' || d.s[j] == '-') {
			j++
		}
		j, ok = d.digits(j)
	}
	if !ok {
		d.i = start
		return nil, d.errorf("invalid number")
	}
	d.i = j
	lit := d.s[start:j]
	if isInt && j-intStart <= 18 {
		var n int64
		for k := intStart; k < j; k++ {
			n = n*10 + int64(d.s[k]-'0')
		}
		if intStart > start {
			n = -n
		}
		return d.a.Int(n), nil
	}
	if isInt {
		if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return d.a.Int(n), nil
		}
	}
	if f, ok := fastFloat(d.s[intStart:j]); ok {
		if intStart > start {
			f = -f
		}
		return d.a.Float(f), nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		d.i = start
		return nil, d.errorf("number %s out of range", lit)
	}
	return d.a.Float(f), nil
}

// pow10 holds the powers of ten a float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// fastFloat converts an unsigned JSON number of at most 15 digits whose
// decimal exponent is within ±22: the digits and the power of ten are then
// exact float64s, and one correctly rounded multiplication or division
// gives the same result as strconv.ParseFloat. ok is false otherwise.
func fastFloat(s string) (f float64, ok bool) {
	var mant uint64
	digits, frac, exp, i := 0, 0, 0, 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		mant = mant*10 + uint64(s[i]-'0')
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			mant = mant*10 + uint64(s[i]-'0')
			digits++
			frac++
		}
	}
	if digits > 15 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			neg = s[i] == '-'
			i++
		}
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if exp = exp*10 + int(s[i]-'0'); exp > 100 {
				return 0, false
			}
		}
		if neg {
			exp = -exp
		}
	}
	if i != len(s) {
		return 0, false
	}
	switch e := exp - frac; {
	case e == 0:
		return float64(mant), true
	case e > 0 && e < len(pow10):
		return float64(mant) * pow10[e], true
	case e < 0 && -e < len(pow10):
		return float64(mant) / pow10[-e], true
	}
	return 0, false
}

// strStop[c] reports whether byte c ends a run of plain string bytes: a
// control character, '"', '\\' or a non-ASCII byte.
var strStop = func() (t [256]bool) {
	for c := range t {
		t[c] = c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf
	}
	return t
}()

// loadWord returns the 8 bytes of s from i on, little endian (one load on
// the usual machines).
func loadWord(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// stopBytes returns 0 when none of the 8 bytes in w needs a closer look
// inside a JSON string (no control character, '"', '\\' or non-ASCII
// byte), and otherwise a mask whose lowest set bit is the high bit of the
// first byte that does (bits above it may be set for bytes that do not).
func stopBytes(w uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q, b := w^(lo*'"'), w^(lo*'\\')
	return ((w-lo*0x20)&^w | (q-lo)&^q | (b-lo)&^b | w) & hi
}
