package fn

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

type impl = func(st *state) func(args ...any) (any, error)

// stateless wraps an implementation that needs nothing from Options.
func stateless(f func(args ...any) (any, error)) impl {
	return func(*state) func(args ...any) (any, error) { return f }
}

// arity checks the argument count; the checker enforces it for typed
// calls, this guards calls through untyped paths.
func arity(name string, args []any, min, max int) error {
	if len(args) < min || (max >= 0 && len(args) > max) {
		switch {
		case max < 0:
			return fmt.Errorf("%s: want at least %d arguments, got %d", name, min, len(args))
		case min == max:
			return fmt.Errorf("%s: want %d arguments, got %d", name, min, len(args))
		default:
			return fmt.Errorf("%s: want %d to %d arguments, got %d", name, min, max, len(args))
		}
	}
	return nil
}

// TypeName names the pipe type of a run-time value, for error messages.
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "int"
	case float32, float64:
		return "float"
	case bool:
		return "bool"
	case time.Time:
		return "timestamp"
	case time.Duration:
		return "duration"
	case []byte:
		return "bytes"
	case []any:
		return "list"
	case map[string]any:
		return "record"
	case Secret:
		return "secret"
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

func argString(name string, args []any, i int) (string, error) {
	s, ok := args[i].(string)
	if !ok {
		return "", fmt.Errorf("%s: argument %d must be a string, got %s", name, i+1, TypeName(args[i]))
	}
	return s, nil
}

func argInt(name string, args []any, i int) (int64, error) {
	n, ok := intOf(args[i])
	if !ok {
		return 0, fmt.Errorf("%s: argument %d must be an int, got %s", name, i+1, TypeName(args[i]))
	}
	return n, nil
}

func argTime(name string, args []any, i int) (time.Time, error) {
	t, ok := args[i].(time.Time)
	if !ok {
		return time.Time{}, fmt.Errorf("%s: argument %d must be a timestamp, got %s", name, i+1, TypeName(args[i]))
	}
	return t, nil
}

// intOf returns v as an int64 if it is any Go integer.
func intOf(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case int16:
		return int64(n), true
	case int8:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint:
		if uint64(n) <= math.MaxInt64 {
			return int64(n), true
		}
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	}
	return 0, false
}

// Strings.

var implMask = stateless(func(args ...any) (any, error) {
	if err := arity("mask", args, 2, 2); err != nil {
		return nil, err
	}
	s, err := argString("mask", args, 0)
	if err != nil {
		return nil, err
	}
	keep, err := argInt("mask", args, 1)
	if err != nil {
		return nil, err
	}
	if keep < 0 {
		return nil, fmt.Errorf("mask: keep must not be negative, got %d", keep)
	}
	n := int64(utf8.RuneCountInString(s))
	if keep >= n {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	i := int64(0)
	for _, r := range s {
		if i < n-keep {
			b.WriteByte('*')
		} else {
			b.WriteRune(r)
		}
		i++
	}
	return b.String(), nil
})

func bytesArg(name string, args []any) ([]byte, error) {
	if err := arity(name, args, 1, 1); err != nil {
		return nil, err
	}
	switch v := args[0].(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	}
	return nil, fmt.Errorf("%s: argument must be a string or bytes, got %s", name, TypeName(args[0]))
}

// implDigest is a digest function: the hex digest of a string or bytes.
func implDigest(name string, h func() hash.Hash) impl {
	return stateless(func(args ...any) (any, error) {
		b, err := bytesArg(name, args)
		if err != nil {
			return nil, err
		}
		d := h()
		d.Write(b)
		return hex.EncodeToString(d.Sum(nil)), nil
	})
}

// implHMAC is an HMAC function: the hex HMAC of a message (string or
// bytes) under a key, a secret parameter or a string.
func implHMAC(name string, h func() hash.Hash) impl {
	return stateless(func(args ...any) (any, error) {
		if err := arity(name, args, 2, 2); err != nil {
			return nil, err
		}
		var key []byte
		switch k := args[0].(type) {
		case Secret:
			key = []byte(k.value)
		case string:
			key = []byte(k)
		default:
			return nil, fmt.Errorf("%s: the key must be a secret or a string, got %s", name, TypeName(args[0]))
		}
		msg, err := bytesArg(name, args[1:])
		if err != nil {
			return nil, err
		}
		m := hmac.New(h, key)
		m.Write(msg)
		return hex.EncodeToString(m.Sum(nil)), nil
	})
}

// Secret is the value of a secret parameter in expressions. It prints,
// formats and marshals as the reference it was read from, never as its
// value; only the hmac functions and reveal read the value.
type Secret struct {
	value, ref string
}

// NewSecret returns the secret value read from reference ref.
func NewSecret(value, ref string) Secret { return Secret{value: value, ref: ref} }

func (s Secret) String() string   { return s.ref }
func (s Secret) GoString() string { return s.ref }

// MarshalJSON writes the reference.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.ref) }

var implReveal = stateless(func(args ...any) (any, error) {
	if err := arity("reveal", args, 1, 1); err != nil {
		return nil, err
	}
	s, ok := args[0].(Secret)
	if !ok {
		return nil, fmt.Errorf("reveal: argument must be a secret, got %s", TypeName(args[0]))
	}
	return s.value, nil
})

// regexpCache holds compiled regular expressions by source. It stops
// growing at max entries so expressions that build patterns per record
// cannot exhaust memory; such patterns are compiled on every call.
type regexpCache struct {
	mu  sync.RWMutex
	m   map[string]*regexp.Regexp
	max int
}

func newRegexpCache(max int) *regexpCache {
	return &regexpCache{m: make(map[string]*regexp.Regexp), max: max}
}

func (c *regexpCache) get(name, src string) (*regexp.Regexp, error) {
	c.mu.RLock()
	re, ok := c.m[src]
	c.mu.RUnlock()
	if ok {
		return re, nil
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("%s: bad regular expression %q: %v", name, src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	c.mu.Lock()
	if len(c.m) < c.max {
		c.m[src] = re
	}
	c.mu.Unlock()
	return re, nil
}

func implRegexMatch(st *state) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		if err := arity("regex_match", args, 2, 2); err != nil {
			return nil, err
		}
		s, err := argString("regex_match", args, 0)
		if err != nil {
			return nil, err
		}
		src, err := argString("regex_match", args, 1)
		if err != nil {
			return nil, err
		}
		re, err := st.regexps.get("regex_match", src)
		if err != nil {
			return nil, err
		}
		return re.MatchString(s), nil
	}
}

func implRegexReplace(st *state) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		if err := arity("regex_replace", args, 3, 3); err != nil {
			return nil, err
		}
		var s [3]string
		for i := range s {
			v, err := argString("regex_replace", args, i)
			if err != nil {
				return nil, err
			}
			s[i] = v
		}
		re, err := st.regexps.get("regex_replace", s[1])
		if err != nil {
			return nil, err
		}
		return re.ReplaceAllString(s[0], s[2]), nil
	}
}

var implSubstr = stateless(func(args ...any) (any, error) {
	if err := arity("substr", args, 2, 3); err != nil {
		return nil, err
	}
	s, err := argString("substr", args, 0)
	if err != nil {
		return nil, err
	}
	start, err := argInt("substr", args, 1)
	if err != nil {
		return nil, err
	}
	runes := []rune(s)
	n := int64(len(runes))
	if start < 0 {
		start = max(n+start, 0)
	}
	if start > n {
		start = n
	}
	end := n
	if len(args) == 3 {
		length, err := argInt("substr", args, 2)
		if err != nil {
			return nil, err
		}
		if length < 0 {
			return nil, fmt.Errorf("substr: length must not be negative, got %d", length)
		}
		end = min(start+length, n)
	}
	return string(runes[start:end]), nil
})

var implCoalesce = stateless(func(args ...any) (any, error) {
	for _, a := range args {
		if a != nil {
			return a, nil
		}
	}
	return nil, nil
})

// Failure is the error of fail and assert: a record failed on purpose,
// with the expression's own message.
type Failure struct{ Message string }

func (f *Failure) Error() string { return f.Message }

var implFail = stateless(func(args ...any) (any, error) {
	if err := arity("fail", args, 1, 1); err != nil {
		return nil, err
	}
	msg, err := argString("fail", args, 0)
	if err != nil {
		return nil, err
	}
	return nil, &Failure{Message: msg}
})

var implAssert = stateless(func(args ...any) (any, error) {
	if err := arity("assert", args, 2, 2); err != nil {
		return nil, err
	}
	ok, isBool := args[0].(bool)
	msg, err := argString("assert", args, 1)
	switch {
	case err != nil:
		return nil, err
	case !isBool:
		return nil, fmt.Errorf("assert: condition is %s, not bool", TypeName(args[0]))
	case !ok:
		return nil, &Failure{Message: msg}
	}
	return true, nil
})

var implUUID = stateless(func(args ...any) (any, error) {
	if err := arity("uuid", args, 0, 0); err != nil {
		return nil, err
	}
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return nil, fmt.Errorf("uuid: %v", err)
	}
	return UUID4(u), nil
})

// UUID4 formats the 16 random bytes u as a version 4, RFC 4122 variant
// UUID: xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx.
func UUID4(u [16]byte) string {
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// Time.

func implNow(st *state) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		if err := arity("now", args, 0, 0); err != nil {
			return nil, err
		}
		return st.now(), nil
	}
}

// layouts are the named layouts accepted by parse_time and format_time.
var layouts = map[string]string{
	"rfc3339":     time.RFC3339,
	"rfc3339nano": time.RFC3339Nano,
	"datetime":    time.DateTime,
	"date":        time.DateOnly,
	"time":        time.TimeOnly,
	"rfc1123":     time.RFC1123,
	"rfc1123z":    time.RFC1123Z,
	"rfc822":      time.RFC822,
	"kitchen":     time.Kitchen,
}

func layoutOf(s string) string {
	if l, ok := layouts[strings.ToLower(s)]; ok {
		return l
	}
	return s
}

var implParseTime = stateless(func(args ...any) (any, error) {
	if err := arity("parse_time", args, 1, 2); err != nil {
		return nil, err
	}
	s, err := argString("parse_time", args, 0)
	if err != nil {
		return nil, err
	}
	layout := time.RFC3339Nano // also accepts RFC 3339 without fraction
	if len(args) == 2 {
		l, err := argString("parse_time", args, 1)
		if err != nil {
			return nil, err
		}
		layout = layoutOf(l)
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return nil, fmt.Errorf("parse_time: cannot parse %q as %q", s, layout)
	}
	return t, nil
})

var implFormatTime = stateless(func(args ...any) (any, error) {
	if err := arity("format_time", args, 2, 2); err != nil {
		return nil, err
	}
	t, err := argTime("format_time", args, 0)
	if err != nil {
		return nil, err
	}
	l, err := argString("format_time", args, 1)
	if err != nil {
		return nil, err
	}
	return t.Format(layoutOf(l)), nil
})

var implUnix = stateless(func(args ...any) (any, error) {
	if err := arity("unix", args, 1, 1); err != nil {
		return nil, err
	}
	t, err := argTime("unix", args, 0)
	if err != nil {
		return nil, err
	}
	return t.Unix(), nil
})

var implUnixMilli = stateless(func(args ...any) (any, error) {
	if err := arity("unix_milli", args, 1, 1); err != nil {
		return nil, err
	}
	t, err := argTime("unix_milli", args, 0)
	if err != nil {
		return nil, err
	}
	return t.UnixMilli(), nil
})

var implFromUnix = stateless(func(args ...any) (any, error) {
	if err := arity("from_unix", args, 1, 1); err != nil {
		return nil, err
	}
	if n, ok := intOf(args[0]); ok {
		return time.Unix(n, 0).UTC(), nil
	}
	f, ok := args[0].(float64)
	if !ok {
		return nil, fmt.Errorf("from_unix: argument must be an int or float, got %s", TypeName(args[0]))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("from_unix: %v is not a time", f)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
})

var implFromUnixMilli = stateless(func(args ...any) (any, error) {
	if err := arity("from_unix_milli", args, 1, 1); err != nil {
		return nil, err
	}
	n, err := argInt("from_unix_milli", args, 0)
	if err != nil {
		return nil, err
	}
	return time.UnixMilli(n).UTC(), nil
})

// Casts.

var implToInt = stateless(func(args ...any) (any, error) {
	if err := arity("to_int", args, 1, 1); err != nil {
		return nil, err
	}
	v := args[0]
	if n, ok := intOf(v); ok {
		return n, nil
	}
	if f, ok := v.(float32); ok {
		v = float64(f)
	}
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || x < math.MinInt64 || x >= math.MaxInt64 {
			return nil, fmt.Errorf("to_int: %v is not a whole number in the int range", x)
		}
		return int64(x), nil
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("to_int: cannot convert %q to int", x)
		}
		return n, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case time.Duration:
		return int64(x), nil
	}
	return nil, fmt.Errorf("to_int: cannot convert %s to int", TypeName(v))
})

var implToFloat = stateless(func(args ...any) (any, error) {
	if err := arity("to_float", args, 1, 1); err != nil {
		return nil, err
	}
	v := args[0]
	if n, ok := intOf(v); ok {
		return float64(n), nil
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return nil, fmt.Errorf("to_float: cannot convert %q to float", x)
		}
		return f, nil
	}
	return nil, fmt.Errorf("to_float: cannot convert %s to float", TypeName(v))
})

// implToString is to_string, and string, which replaces expr's builtin
// (Go's %v: "<nil>" for null, Go syntax for records and times).
func implToString(name string) impl {
	return stateless(func(args ...any) (any, error) { return toString(name, args) })
}

func toString(name string, args []any) (any, error) {
	if err := arity(name, args, 1, 1); err != nil {
		return nil, err
	}
	v := args[0]
	if n, ok := intOf(v); ok {
		return strconv.FormatInt(n, 10), nil
	}
	switch x := v.(type) {
	case nil:
		return nil, fmt.Errorf("%s: cannot convert null to string", name)
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case time.Duration:
		return x.String(), nil
	case []byte:
		return string(x), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot convert %s to string: %v", name, TypeName(v), err)
	}
	return string(b), nil
}

var implToBool = stateless(func(args ...any) (any, error) {
	if err := arity("to_bool", args, 1, 1); err != nil {
		return nil, err
	}
	v := args[0]
	if n, ok := intOf(v); ok {
		switch n {
		case 0:
			return false, nil
		case 1:
			return true, nil
		}
		return nil, fmt.Errorf("to_bool: cannot convert %d to bool (want 0 or 1)", n)
	}
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
		return nil, fmt.Errorf("to_bool: cannot convert %q to bool", x)
	case float64:
		switch x {
		case 0:
			return false, nil
		case 1:
			return true, nil
		}
		return nil, fmt.Errorf("to_bool: cannot convert %v to bool (want 0 or 1)", x)
	}
	return nil, fmt.Errorf("to_bool: cannot convert %s to bool", TypeName(v))
})

// Records.

// recordOf returns v as a record map. Records are map[string]any at run
// time; other string-keyed maps are read through reflection.
func recordOf(name string, v any, i int) (map[string]any, error) {
	switch m := v.(type) {
	case map[string]any:
		return m, nil
	case nil:
		return nil, fmt.Errorf("%s: argument %d is null, want a record", name, i+1)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String {
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()] = it.Value().Interface()
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: argument %d must be a record, got %s", name, i+1, TypeName(v))
}

const maxDepth = 100

var implFlatten = stateless(func(args ...any) (any, error) {
	if err := arity("flatten", args, 1, 2); err != nil {
		return nil, err
	}
	if len(args) == 1 {
		rv := reflect.ValueOf(args[0])
		if args[0] == nil || (rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array) {
			return nil, fmt.Errorf("flatten: with one argument, want a list, got %s (give a separator to flatten a record)", TypeName(args[0]))
		}
		out := []any{}
		if err := flattenList(&out, rv, 0); err != nil {
			return nil, err
		}
		return out, nil
	}
	r, err := recordOf("flatten", args[0], 0)
	if err != nil {
		return nil, err
	}
	sep, err := argString("flatten", args, 1)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(r))
	if err := flattenRecord(out, "", sep, r, 0); err != nil {
		return nil, err
	}
	return out, nil
})

func flattenList(out *[]any, v reflect.Value, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("flatten: lists nested deeper than %d", maxDepth)
	}
	for i := 0; i < v.Len(); i++ {
		e := v.Index(i)
		for e.Kind() == reflect.Interface && !e.IsNil() {
			e = e.Elem()
		}
		if (e.Kind() == reflect.Slice && e.Type().Elem().Kind() != reflect.Uint8) || e.Kind() == reflect.Array {
			if err := flattenList(out, e, depth+1); err != nil {
				return err
			}
			continue
		}
		*out = append(*out, v.Index(i).Interface())
	}
	return nil
}

func flattenRecord(out map[string]any, prefix, sep string, r map[string]any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("flatten: records nested deeper than %d", maxDepth)
	}
	for k, v := range r {
		key := k
		if prefix != "" {
			key = prefix + sep + k
		}
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			if err := flattenRecord(out, key, sep, m, depth+1); err != nil {
				return err
			}
			continue
		}
		out[key] = v
	}
	return nil
}

var implMerge = stateless(func(args ...any) (any, error) {
	if err := arity("merge", args, 1, -1); err != nil {
		return nil, err
	}
	out := make(map[string]any)
	for i, a := range args {
		if a == nil {
			continue
		}
		r, err := recordOf("merge", a, i)
		if err != nil {
			return nil, err
		}
		for k, v := range r {
			out[k] = v
		}
	}
	return out, nil
})

var implWithout = stateless(func(args ...any) (any, error) {
	if err := arity("without", args, 1, -1); err != nil {
		return nil, err
	}
	r, err := recordOf("without", args[0], 0)
	if err != nil {
		return nil, err
	}
	drop := make(map[string]bool, len(args)-1)
	for i := 1; i < len(args); i++ {
		k, err := argString("without", args, i)
		if err != nil {
			return nil, err
		}
		drop[k] = true
	}
	out := make(map[string]any, len(r))
	for k, v := range r {
		if !drop[k] {
			out[k] = v
		}
	}
	return out, nil
})

// Randomness.

var implRandom = stateless(func(args ...any) (any, error) {
	if err := arity("random", args, 0, 0); err != nil {
		return nil, err
	}
	return mrand.Float64(), nil
})

var implRandomInt = stateless(func(args ...any) (any, error) {
	if err := arity("random_int", args, 2, 2); err != nil {
		return nil, err
	}
	lo, err := argInt("random_int", args, 0)
	if err != nil {
		return nil, err
	}
	hi, err := argInt("random_int", args, 1)
	if err != nil {
		return nil, err
	}
	if hi < lo {
		return nil, fmt.Errorf("random_int: hi %d is below lo %d", hi, lo)
	}
	span := uint64(hi - lo)
	if span == math.MaxUint64 {
		return int64(mrand.Uint64()), nil
	}
	return lo + int64(mrand.Uint64N(span+1)), nil
})
