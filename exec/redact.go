package exec

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// minRedact is the length, in bytes, from which a secret value is replaced
// wherever it occurs. A shorter value is replaced only where it stands alone
// as a word: as a substring it would match inside unrelated words.
const minRedact = 4

// Redactor replaces resolved secret values in text by the references they
// came from: `table "x.hunter22"` becomes `table "x.${env:PW}"`.
//
// [Run] adds every value it resolves, in the forms it takes in messages: as
// is, without surrounding blanks, quoted as by %q, percent-encoded (query,
// path and user-info style) and, for a connection string, its password (a
// URL's user-info or password parameter, a key=value string's password).
// A form of [minRedact] bytes or more is replaced wherever it occurs; a
// shorter one only where neither neighbour is a letter, digit, '_', '-' or
// non-ASCII byte. A blank value is never replaced.
//
// The zero value is ready to use; a nil *Redactor changes nothing. Its
// methods are safe for concurrent use.
type Redactor struct {
	mu    sync.RWMutex
	refs  map[string]string // form -> reference
	first map[byte][]string // forms by their first byte, longest first
}

// Add registers value, resolved from ref (the reference text, ${env:PW}).
// A blank value is no secret: it is not registered.
func (r *Redactor) Add(value, ref string) {
	if strings.TrimSpace(value) == "" {
		return
	}
	forms := secretForms(value)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refs == nil {
		r.refs, r.first = map[string]string{}, map[byte][]string{}
	}
	for _, f := range forms {
		if _, ok := r.refs[f]; ok || f == "" {
			continue
		}
		r.refs[f] = ref
		l := append(r.first[f[0]], f)
		slices.SortStableFunc(l, func(a, b string) int { return len(b) - len(a) })
		r.first[f[0]] = l
	}
}

// Redact returns s with every registered value replaced by its reference,
// in one pass from left to right (the longest value wins at each place).
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.refs) == 0 {
		return s
	}
	var b strings.Builder
	last := -1 // end of the last replacement; -1: none yet
	for i := 0; i < len(s); {
		f := r.match(s, i)
		if f == "" {
			i++
			continue
		}
		b.WriteString(s[max(last, 0):i])
		b.WriteString(r.refs[f])
		i += len(f)
		last = i
	}
	if last < 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// match returns the registered form found at s[i:], or "".
func (r *Redactor) match(s string, i int) string {
	for _, f := range r.first[s[i]] {
		if !strings.HasPrefix(s[i:], f) {
			continue
		}
		if len(f) >= minRedact || (i == 0 || !wordByte(s[i-1])) && (i+len(f) == len(s) || !wordByte(s[i+len(f)])) {
			return f
		}
	}
	return ""
}

func wordByte(c byte) bool {
	return c == '_' || c == '-' || c >= 0x80 || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// Error returns err with its message redacted, or err itself when its
// message holds no secret. errors.Is and errors.As still see the original
// chain; a *StageError stays one, with its Err redacted.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := r.Redact(msg)
	if red == msg {
		return err
	}
	if se, ok := err.(*StageError); ok {
		return &StageError{Stage: se.Stage, At: r.Redact(se.At), Err: r.Error(se.Err)}
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Handler returns a handler that passes h every record with its message and
// attribute values redacted. Attributes given to WithAttrs are redacted
// when given: Run resolves every secret before it hands out a logger.
func (r *Redactor) Handler(h slog.Handler) slog.Handler {
	if rh, ok := h.(*redactHandler); ok && rh.r == r {
		return h
	}
	return &redactHandler{h: h, r: r}
}

type redactHandler struct {
	h slog.Handler
	r *Redactor
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.r.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.r.attr(a)
	}
	return &redactHandler{h: h.h.WithAttrs(red), r: h.r}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{h: h.h.WithGroup(name), r: h.r}
}

// attr redacts an attribute's value as it would be printed; a value that
// changes becomes a string.
func (r *Redactor) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, e := range g {
			out[i] = r.attr(e)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	s := v.String()
	if err, ok := v.Any().(error); ok && v.Kind() == slog.KindAny {
		s = err.Error()
	}
	if red := r.Redact(s); red != s {
		return slog.String(a.Key, red)
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// secretForms returns the texts under which a secret value may show in a
// message.
func secretForms(v string) []string {
	q := strconv.Quote(v)
	forms := []string{v, strings.TrimSpace(v), q[1 : len(q)-1],
		url.QueryEscape(v), url.PathEscape(v), url.User(v).String()}
	if p, ok := dsnPassword(v); ok && p != v {
		forms = append(forms, secretForms(p)...)
	}
	return forms
}

// dsnPassword returns the password a connection string holds: a URL's
// user-info password or password parameter, or the password setting of a
// key=value string (values unquoted or in single quotes, \ escapes).
func dsnPassword(s string) (string, bool) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", false
		}
		if p, ok := u.User.Password(); ok {
			return p, true
		}
		p := u.Query().Get("password")
		return p, p != ""
	}
	const blanks = " \t\n\r\f\v"
	for s = strings.TrimLeft(s, blanks); s != ""; s = strings.TrimLeft(s, blanks) {
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			return "", false
		}
		rest = strings.TrimLeft(rest, blanks)
		quoted := strings.HasPrefix(rest, "'")
		if quoted {
			rest = rest[1:]
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest); i++ {
			c := rest[i]
			if c == '\\' && i+1 < len(rest) {
				i++
				v.WriteByte(rest[i])
				continue
			}
			if quoted && c == '\'' {
				i++
				break
			}
			if !quoted && strings.IndexByte(blanks, c) >= 0 {
				break
			}
			v.WriteByte(c)
		}
		if strings.TrimSpace(key) == "password" {
			return v.String(), v.Len() > 0
		}
		s = rest[i:]
	}
	return "", false
}
