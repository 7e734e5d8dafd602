package fn_test

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/expr-lang/expr"

	"pipe.dev/pipe/stdlib/fn"
)

var clock = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

func env() map[string]any {
	return map[string]any{
		"card":  "4111111111111111",
		"n":     int64(42),
		"f":     2.5,
		"t":     time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC),
		"b":     []byte("abc"),
		"null":  nil,
		"rec":   map[string]any{"id": "c1", "addr": map[string]any{"city": "Paris", "zip": "75001"}},
		"other": map[string]any{"id": "c2", "vip": true},
		"list":  []any{int64(1), []any{int64(2), []any{int64(3)}}},
		"key":   fn.NewSecret("key", "${env:KEY}"),
		"fox":   "The quick brown fox jumps over the lazy dog",
	}
}

func eval(t *testing.T, src string) (any, error) {
	opts := append([]expr.Option{expr.Env(env())}, fn.Options(func() time.Time { return clock })...)
	p, err := expr.Compile(src, opts...)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	return expr.Run(p, env())
}

func TestFunctions(t *testing.T) {
	tests := []struct {
		src  string
		want any
	}{
		{`mask(card, 4)`, "************1111"},
		{`mask("ab", 4)`, "ab"},
		{`mask("héllo", 2)`, "***lo"},
		{`hash("abc")`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{`sha256("abc")`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{`sha256(b)`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{`md5("abc")`, "900150983cd24fb0d6963f7d28e17f72"},
		{`sha1("abc")`, "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{`sha512("abc")`, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
		// HMAC under a secret parameter or a string (RFC 2104 vectors).
		{`hmac_sha256(key, fox)`, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
		{`hmac_sha256("key", fox)`, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
		{`hmac_sha1(key, fox)`, "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"},
		{`hmac_sha512(key, fox)`, "b42af09057bac1e2d41708e48a902e09b5ff7f12ab428a4fe86653c73dd248fb82f948a549f7b791a5b41915ee4d1ec3935357e4e2317250d0372afa2ebeeb3a"},
		{`reveal(key)`, "key"},
		// A secret prints as its reference, never as its value.
		{`to_string(key)`, `"${env:KEY}"`},
		{`toJSON({"k": key})`, "{\n  \"k\": \"${env:KEY}\"\n}"},
		{`regex_match("order-17", "^order-[0-9]+$")`, true},
		{`regex_match("order-x", "^order-[0-9]+$")`, false},
		{`regex_replace("a1b22", "[0-9]+", "#")`, "a#b#"},
		{`regex_replace("john smith", "(\\w+) (\\w+)", "$2 $1")`, "smith john"},
		{`substr("hello", 1)`, "ello"},
		{`substr("hello", 1, 3)`, "ell"},
		{`substr("hello", -3)`, "llo"},
		{`substr("héllo", 1, 1)`, "é"},
		{`substr("hi", 5)`, ""},
		{`coalesce(null, "x", "y")`, "x"},
		{`coalesce(null, null)`, nil},
		{`now()`, clock},
		{`parse_time("2024-06-01T10:00:00Z")`, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)},
		{`parse_time("2024-06-01T10:00:00.5Z")`, time.Date(2024, 6, 1, 10, 0, 0, 5e8, time.UTC)},
		{`parse_time("2024-06-01", "date")`, time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)},
		{`parse_time("01/06/2024", "02/01/2006")`, time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)},
		{`format_time(t, "2006-01-02")`, "2024-06-01"},
		{`format_time(t, "rfc3339")`, "2024-06-01T10:00:00Z"},
		{`unix(t)`, int64(1717236000)},
		{`unix_milli(t)`, int64(1717236000000)},
		{`from_unix(1717236000)`, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)},
		{`from_unix(1717236000.25)`, time.Date(2024, 6, 1, 10, 0, 0, 25e7, time.UTC)},
		{`from_unix_milli(1717236000001)`, time.Date(2024, 6, 1, 10, 0, 0, 1e6, time.UTC)},
		{`to_int("42")`, int64(42)},
		{`to_int(f * 2)`, int64(5)},
		{`to_int(true)`, int64(1)},
		{`to_int(n)`, int64(42)},
		{`to_float("2.5")`, 2.5},
		{`to_float(n)`, 42.0},
		{`to_string(n)`, "42"},
		{`to_string(f)`, "2.5"},
		{`to_string(t)`, "2024-06-01T10:00:00Z"},
		{`to_string(b)`, "abc"},
		{`to_string(other)`, `{"id":"c2","vip":true}`},
		{`string(t)`, "2024-06-01T10:00:00Z"},
		{`assert(n > 40, "n must be over 40")`, true},
		{`string(other)`, `{"id":"c2","vip":true}`},
		{`string(n) + string(f)`, "422.5"},
		{`to_bool("true")`, true},
		{`to_bool("0")`, false},
		{`to_bool(1)`, true},
		{`flatten(rec, "_")`, map[string]any{"id": "c1", "addr_city": "Paris", "addr_zip": "75001"}},
		{`flatten(list)`, []any{int64(1), int64(2), int64(3)}},
		{`merge(rec, other)`, map[string]any{"id": "c2", "vip": true, "addr": map[string]any{"city": "Paris", "zip": "75001"}}},
		{`merge(other, null)`, map[string]any{"id": "c2", "vip": true}},
		{`without(other, "vip")`, map[string]any{"id": "c2"}},
		{`without(rec, "addr", "id")`, map[string]any{}},
		{`random_int(3, 3)`, int64(3)},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			got, err := eval(t, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestFunctionErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{`mask(card, -1)`, "mask: keep must not be negative, got -1"},
		{`mask(other["missing"], 1)`, "mask: argument 1 must be a string, got null"},
		{`regex_match("x", "(")`, "regex_match: bad regular expression \"(\": missing closing ): `(`"},
		{`substr("x", 0, -1)`, "substr: length must not be negative, got -1"},
		{`parse_time("yesterday")`, "parse_time: cannot parse \"yesterday\" as \"2006-01-02T15:04:05.999999999Z07:00\""},
		{`to_int("4x")`, `to_int: cannot convert "4x" to int`},
		{`to_int(f)`, "to_int: 2.5 is not a whole number in the int range"},
		{`to_int(rec)`, "to_int: cannot convert record to int"},
		{`to_float("x")`, `to_float: cannot convert "x" to float`},
		{`to_string(null)`, "to_string: cannot convert null to string"},
		{`string(null)`, "string: cannot convert null to string"},
		{`fail("amount " + to_string(f) + " is negative")`, "amount 2.5 is negative"},
		{`assert(n > 50, "n must be over 50")`, "n must be over 50"},
		{`to_bool("maybe")`, `to_bool: cannot convert "maybe" to bool`},
		{`to_bool(2)`, "to_bool: cannot convert 2 to bool (want 0 or 1)"},
		{`flatten(card)`, "flatten: with one argument, want a list, got string (give a separator to flatten a record)"},
		{`flatten(card, "_")`, "flatten: argument 1 must be a record, got string"},
		{`merge(rec, card)`, "merge: argument 2 must be a record, got string"},
		{`without(other["missing"], "x")`, "without: argument 1 is null, want a record"},
		{`random_int(5, 1)`, "random_int: hi 1 is below lo 5"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			_, err := eval(t, tt.src)
			if err == nil {
				t.Fatal("want an error")
			}
			if msg := strings.SplitN(err.Error(), " (1:", 2)[0]; msg != tt.want {
				t.Errorf("error %q, want %q", msg, tt.want)
			}
		})
	}
}

func TestNonDeterministic(t *testing.T) {
	u, err := eval(t, `uuid()`)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(u.(string)) {
		t.Errorf("uuid() = %q, not a version 4 uuid", u)
	}
	for range 100 {
		r, err := eval(t, `random()`)
		if err != nil {
			t.Fatal(err)
		}
		if f := r.(float64); f < 0 || f >= 1 {
			t.Fatalf("random() = %v, outside [0, 1)", f)
		}
		n, err := eval(t, `random_int(1, 6)`)
		if err != nil {
			t.Fatal(err)
		}
		if i := n.(int64); i < 1 || i > 6 {
			t.Fatalf("random_int(1, 6) = %v, outside [1, 6]", i)
		}
	}
	for _, name := range []string{"now", "random", "random_int", "uuid"} {
		if !fn.IsNonDeterministic(name) {
			t.Errorf("%s is not marked non-deterministic", name)
		}
	}
	if fn.IsNonDeterministic("mask") {
		t.Error("mask is marked non-deterministic")
	}
}

func TestRegistry(t *testing.T) {
	seen := map[string]bool{}
	for i, f := range fn.Functions {
		if f.Name == "" || f.Doc == "" || !strings.HasPrefix(f.Signature, f.Name+"(") {
			t.Errorf("incomplete entry %+v", f)
		}
		if seen[f.Name] {
			t.Errorf("duplicate function %q", f.Name)
		}
		seen[f.Name] = true
		if i > 0 && fn.Functions[i-1].Name > f.Name {
			t.Errorf("Functions not sorted at %q", f.Name)
		}
		if f.Name == "env" || f.Name == "getenv" {
			t.Errorf("%q must not be available to expressions", f.Name)
		}
	}
	for _, want := range []string{"mask", "hash", "sha256", "md5", "regex_match", "regex_replace", "substr",
		"coalesce", "uuid", "now", "parse_time", "format_time", "unix", "from_unix", "to_int", "to_float",
		"to_string", "to_bool", "flatten", "merge", "without", "random", "random_int", "fail", "assert",
		"sha1", "sha512", "hmac_sha1", "hmac_sha256", "hmac_sha512", "reveal"} {
		if !seen[want] {
			t.Errorf("function %q missing", want)
		}
	}
}

func TestConcurrentRegexCache(t *testing.T) {
	opts := append([]expr.Option{expr.Env(env())}, fn.Options(nil)...)
	p, err := expr.Compile(`regex_replace(card, "1+", "-") + to_string(regex_match(card, "^4"))`, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				out, err := expr.Run(p, env())
				if err != nil || out != "4-true" {
					t.Errorf("got %v, %v", out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestSecretNeverPrinted: a secret formats, prints and marshals as its
// reference.
func TestSecretNeverPrinted(t *testing.T) {
	s := fn.NewSecret("hunter2", "${env:KEY}")
	for _, got := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v %+v", s, s, s, s), fmt.Sprint([]any{s}), fmt.Sprint(map[string]any{"k": s})} {
		if strings.Contains(got, "hunter2") || !strings.Contains(got, "${env:KEY}") {
			t.Errorf("printed %q", got)
		}
	}
}
