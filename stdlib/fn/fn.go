package fn

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"slices"
	"time"

	"github.com/expr-lang/expr"
)

// Func documents one expression function.
type Func struct {
	Name      string // name as called in expressions
	Signature string // pipe types, e.g. "mask(s: string, keep: int) -> string"
	Doc       string // one line, lower-case
	// NonDeterministic marks functions whose result may differ between two
	// runs on the same record (now, random, random_int, uuid).
	NonDeterministic bool
}

// Functions lists every function of the library in alphabetical order.
var Functions = func() []Func {
	out := make([]Func, len(registry))
	for i, d := range registry {
		out[i] = d.Func
	}
	slices.SortFunc(out, func(a, b Func) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}()

// Lookup returns the documentation of the function called name.
func Lookup(name string) (Func, bool) {
	for _, d := range registry {
		if d.Name == name {
			return d.Func, true
		}
	}
	return Func{}, false
}

// IsNonDeterministic reports whether name is a library function whose result
// may differ between runs on the same record.
func IsNonDeterministic(name string) bool {
	f, ok := Lookup(name)
	return ok && f.NonDeterministic
}

// replaced lists the expr builtins that the library replaces; Options
// disables them.
var replaced = []string{"now", "string"}

// def is a registry entry: documentation, implementation and the typed
// signatures the checker matches calls against.
type def struct {
	Func
	impl  func(st *state) func(args ...any) (any, error)
	types []any // pointers to func types, e.g. new(func(string) string)
}

// state is what one Options call shares between its functions.
type state struct {
	now     func() time.Time
	regexps *regexpCache
}

// Options returns the expr options that install the library: every
// function with its typed signatures, and now() reading the given clock
// (nil means time.Now). Each call returns fresh options with their own
// regexp cache; the functions are safe for concurrent use.
func Options(now func() time.Time) []expr.Option {
	if now == nil {
		now = time.Now
	}
	st := &state{now: now, regexps: newRegexpCache(512)}
	opts := make([]expr.Option, 0, len(registry)+len(replaced))
	for _, name := range replaced {
		opts = append(opts, expr.DisableBuiltin(name))
	}
	for _, d := range registry {
		opts = append(opts, expr.Function(d.Name, guard(d.Name, d.impl(st)), d.types...))
	}
	return opts
}

// guard turns a panic inside a function into an error naming it, so bad
// input never takes a task down.
func guard(name string, f func(args ...any) (any, error)) func(args ...any) (any, error) {
	return func(args ...any) (out any, err error) {
		defer func() {
			if r := recover(); r != nil {
				out, err = nil, fmt.Errorf("%s: %v", name, r)
			}
		}()
		return f(args...)
	}
}

var (
	digestTypes = []any{new(func(string) string), new(func([]byte) string)}
	hmacTypes   = []any{new(func(Secret, string) string), new(func(string, string) string),
		new(func(Secret, []byte) string), new(func(string, []byte) string)}
)

// KeyFuncs are the functions whose first argument is a key: the one place
// a secret parameter goes, and where a string literal is a hard-coded
// credential.
var KeyFuncs = []string{"hmac_sha1", "hmac_sha256", "hmac_sha512"}

var registry = []def{
	// Strings.
	{Func{Name: "mask", Signature: "mask(s: string, keep: int) -> string",
		Doc: "replaces every character of s but the last keep with '*'"},
		implMask, []any{new(func(string, int64) string)}},
	{Func{Name: "hash", Signature: "hash(s: string | bytes) -> string",
		Doc: "sha-256 digest of s as lower-case hex (same as sha256)"},
		implDigest("hash", sha256.New), digestTypes},
	{Func{Name: "sha256", Signature: "sha256(s: string | bytes) -> string",
		Doc: "sha-256 digest of s as lower-case hex"},
		implDigest("sha256", sha256.New), digestTypes},
	{Func{Name: "sha512", Signature: "sha512(s: string | bytes) -> string",
		Doc: "sha-512 digest of s as lower-case hex"},
		implDigest("sha512", sha512.New), digestTypes},
	{Func{Name: "sha1", Signature: "sha1(s: string | bytes) -> string",
		Doc: "sha-1 digest of s as lower-case hex (not for security)"},
		implDigest("sha1", sha1.New), digestTypes},
	{Func{Name: "md5", Signature: "md5(s: string | bytes) -> string",
		Doc: "md5 digest of s as lower-case hex (not for security)"},
		implDigest("md5", md5.New), digestTypes},
	{Func{Name: "hmac_sha256", Signature: "hmac_sha256(key: secret | string, message: string | bytes) -> string",
		Doc: "HMAC-SHA-256 of message under key as lower-case hex; the key is a secret parameter"},
		implHMAC("hmac_sha256", sha256.New), hmacTypes},
	{Func{Name: "hmac_sha512", Signature: "hmac_sha512(key: secret | string, message: string | bytes) -> string",
		Doc: "HMAC-SHA-512 of message under key as lower-case hex"},
		implHMAC("hmac_sha512", sha512.New), hmacTypes},
	{Func{Name: "hmac_sha1", Signature: "hmac_sha1(key: secret | string, message: string | bytes) -> string",
		Doc: "HMAC-SHA-1 of message under key as lower-case hex (for systems that require it)"},
		implHMAC("hmac_sha1", sha1.New), hmacTypes},
	{Func{Name: "reveal", Signature: "reveal(s: secret) -> string",
		Doc: "the value of a secret parameter as a string: the one way to let a secret into a record"},
		implReveal, []any{new(func(Secret) string)}},
	{Func{Name: "regex_match", Signature: "regex_match(s: string, re: string) -> bool",
		Doc: "reports whether s contains a match of the RE2 regular expression re"},
		implRegexMatch, []any{new(func(string, string) bool)}},
	{Func{Name: "regex_replace", Signature: "regex_replace(s: string, re: string, repl: string) -> string",
		Doc: "replaces every match of re in s by repl, which may use $1 or ${name}"},
		implRegexReplace, []any{new(func(string, string, string) string)}},
	{Func{Name: "substr", Signature: "substr(s: string, start: int, length?: int) -> string",
		Doc: "the characters of s from start (negative counts from the end), at most length of them"},
		implSubstr, []any{new(func(string, int64) string), new(func(string, int64, int64) string)}},
	{Func{Name: "coalesce", Signature: "coalesce(a: any, b: any, ...) -> any",
		Doc: "the first argument that is not null, or null"},
		implCoalesce, []any{new(func(any, ...any) any)}},
	{Func{Name: "fail", Signature: "fail(message: string) -> never",
		Doc: "fails the record with message, which its stage's on_error gets (a dead-letter envelope's error)"},
		implFail, []any{new(func(string) any)}},
	{Func{Name: "assert", Signature: "assert(cond: bool, message: string) -> bool",
		Doc: "true when cond holds; else fails the record with message, as fail does"},
		implAssert, []any{new(func(bool, string) bool)}},
	{Func{Name: "uuid", Signature: "uuid() -> string",
		Doc: "a random version 4 uuid", NonDeterministic: true},
		implUUID, []any{new(func() string)}},

	// Time.
	{Func{Name: "now", Signature: "now() -> timestamp",
		Doc: "the current time (pinned by a test's clock)", NonDeterministic: true},
		implNow, []any{new(func() time.Time)}},
	{Func{Name: "parse_time", Signature: "parse_time(s: string, layout?: string) -> timestamp",
		Doc: "parses s with a Go layout or a name (rfc3339, rfc3339nano, datetime, date, rfc1123); default rfc3339"},
		implParseTime, []any{new(func(string) time.Time), new(func(string, string) time.Time)}},
	{Func{Name: "format_time", Signature: "format_time(t: timestamp, layout: string) -> string",
		Doc: "formats t with a Go layout or a layout name as for parse_time"},
		implFormatTime, []any{new(func(time.Time, string) string)}},
	{Func{Name: "unix", Signature: "unix(t: timestamp) -> int",
		Doc: "seconds since 1970-01-01T00:00:00Z"},
		implUnix, []any{new(func(time.Time) int64)}},
	{Func{Name: "unix_milli", Signature: "unix_milli(t: timestamp) -> int",
		Doc: "milliseconds since 1970-01-01T00:00:00Z"},
		implUnixMilli, []any{new(func(time.Time) int64)}},
	{Func{Name: "from_unix", Signature: "from_unix(seconds: int | float) -> timestamp",
		Doc: "the UTC timestamp that many seconds after 1970-01-01T00:00:00Z"},
		implFromUnix, []any{new(func(int64) time.Time), new(func(float64) time.Time)}},
	{Func{Name: "from_unix_milli", Signature: "from_unix_milli(ms: int) -> timestamp",
		Doc: "the UTC timestamp that many milliseconds after 1970-01-01T00:00:00Z"},
		implFromUnixMilli, []any{new(func(int64) time.Time)}},

	// Casts.
	{Func{Name: "to_int", Signature: "to_int(v: any) -> int",
		Doc: "v as an int: ints, whole floats, decimal strings and bools convert; anything else is an error"},
		implToInt, []any{new(func(any) int64)}},
	{Func{Name: "to_float", Signature: "to_float(v: any) -> float",
		Doc: "v as a float: numbers and numeric strings convert; anything else is an error"},
		implToFloat, []any{new(func(any) float64)}},
	{Func{Name: "to_string", Signature: "to_string(v: any) -> string",
		Doc: "v as a string: timestamps in RFC 3339, bytes as UTF-8, lists and records as JSON"},
		implToString("to_string"), []any{new(func(any) string)}},
	{Func{Name: "string", Signature: "string(v: any) -> string",
		Doc: "the same as to_string (replaces expr's builtin)"},
		implToString("string"), []any{new(func(any) string)}},
	{Func{Name: "to_bool", Signature: "to_bool(v: any) -> bool",
		Doc: "v as a bool: bools, \"true\"/\"false\"/\"1\"/\"0\" and the numbers 0 and 1 convert; anything else is an error"},
		implToBool, []any{new(func(any) bool)}},

	// Records.
	{Func{Name: "flatten", Signature: "flatten(r: record, sep: string) -> map<string, any> | flatten(l: list) -> list<any>",
		Doc: "a record's nested fields as one level, keys joined by sep; with a list, its nested lists spliced in"},
		implFlatten, []any{new(func(any, string) map[string]any), new(func(any) []any)}},
	{Func{Name: "merge", Signature: "merge(a: record, b: record, ...) -> map<string, any>",
		Doc: "a new record with the fields of all arguments; later ones win; null arguments are skipped"},
		implMerge, []any{new(func(any, ...any) map[string]any)}},
	{Func{Name: "without", Signature: "without(r: record, keys: string...) -> map<string, any>",
		Doc: "a copy of r without the given top-level fields"},
		implWithout, []any{new(func(any, ...string) map[string]any)}},

	// Randomness.
	{Func{Name: "random", Signature: "random() -> float",
		Doc: "a random float in [0, 1)", NonDeterministic: true},
		implRandom, []any{new(func() float64)}},
	{Func{Name: "random_int", Signature: "random_int(lo: int, hi: int) -> int",
		Doc: "a random int in [lo, hi] (both included)", NonDeterministic: true},
		implRandomInt, []any{new(func(int64, int64) int64)}},
}
