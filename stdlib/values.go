package stdlib

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"pipe.dev/pipe/lang"
)

// One value model: a literal (compiler), the text a reference resolves to
// (executor) and a spec's defaults all become the Go values a Config holds
// through the functions of this file. None of their errors repeats the
// text it was given: that text may be a secret's value.

var (
	errDuration = errors.New("not a duration: write whole numbers with units ns, us, ms, s, m, h or d, such as 250ms, 1m30s or 2d")
	errSize     = errors.New("not a size: write a number with a unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, such as 64MiB or 100B")
	errRange    = errors.New("out of range")
)

// ParseDuration parses a duration as its literal is written: whole numbers,
// each with a unit (see lang.DurationUnit), such as 250ms, 1m30s or 2d.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errDuration
	}
	var total time.Duration
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		k := j
		for k < len(s) && !isDigit(s[k]) {
			k++
		}
		unit, ok := lang.DurationUnit(s[j:k])
		if j == i || !ok {
			return 0, errDuration
		}
		n, err := strconv.ParseInt(s[i:j], 10, 64)
		if err != nil || n > (math.MaxInt64-int64(total))/int64(unit) {
			return 0, fmt.Errorf("duration %w", errRange)
		}
		total += time.Duration(n) * unit
		i = k
	}
	return total, nil
}

// ParseSize parses a size in bytes as its literal is written: a number
// with a unit (see lang.SizeUnit) such as 64MiB, 1.5GB or 512B. A number
// without a unit is not a size, as a duration needs its unit too.
func ParseSize(s string) (int64, error) {
	num := strings.TrimRightFunc(s, unicode.IsLetter)
	whole, frac, dot := strings.Cut(num, ".")
	if !allDigits(whole) || dot && !allDigits(frac) || num == s {
		return 0, errSize
	}
	unit, ok := lang.SizeUnit(s[len(num):])
	if !ok {
		return 0, errSize
	}
	n, err := strconv.ParseFloat(num, 64)
	if b := n * float64(unit); err == nil && b < math.MaxInt64 {
		return int64(b), nil
	}
	return 0, fmt.Errorf("size %w", errRange)
}

func allDigits(s string) bool { return s != "" && strings.TrimLeft(s, "0123456789") == "" }

// ParseTime checks an RFC 3339 timestamp, the value of a time attribute.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("not an RFC 3339 time such as 2024-01-01T00:00:00Z")
	}
	return t, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// ParseValue parses s, the text a reference (${env:NAME}, ${file:...})
// resolved to, as a value of type t written as its literal would be: 1MiB
// for a size, 1d for a duration, an identifier of t's enum, true or false
// for a bool. Blanks around s are ignored except for a string. The result
// is the Go value a Config holds (see Config); a list, map, block or
// schema cannot be written as one reference.
func ParseValue(s string, t ParamType) (any, error) {
	if t.Kind == StringParam || t.Kind == AnyParam {
		return s, nil
	}
	s = strings.TrimSpace(s)
	if slices.Contains(t.OrEnum, s) {
		return Ident(s), nil
	}
	switch t.Kind {
	case IntParam:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, errors.New("not an int")
		}
		return n, nil
	case FloatParam:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, errors.New("not a number")
		}
		return f, nil
	case BoolParam:
		switch s {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, errors.New("not true or false")
	case DurationParam:
		d, err := ParseDuration(s)
		if err != nil {
			return nil, err
		}
		return d, nil
	case SizeParam:
		n, err := ParseSize(s)
		if err != nil {
			return nil, err
		}
		return n, nil
	case EnumParam:
		if !slices.Contains(t.Enum, s) {
			return nil, fmt.Errorf("not one of %s", strings.Join(t.Enum, ", "))
		}
		return Ident(s), nil
	case TimeParam:
		if _, err := ParseTime(s); err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("a %s cannot be given by one reference", t)
}

// valueError is a problem with the attribute at path (dotted) or with one
// of its items.
type valueError struct {
	path string
	err  error
}

func (e *valueError) Error() string { return fmt.Sprintf("attribute %q: %v", e.path, e.err) }
func (e *valueError) Unwrap() error { return e.err }

// CheckValue converts v, an attribute value, to the Go value a Config
// holds for type t (see Config), checking its kind: a string given for a
// kind other than string is the text of a reference, parsed by
// [ParseValue]; an int given for a float widens; list items, map values
// and block attributes are converted in turn, and a block's absent
// attributes get their defaults. A nil v (null) is kept. Errors name no
// value.
func CheckValue(v any, t ParamType) (any, error) {
	if v == nil || t.Kind == AnyParam {
		return v, nil
	}
	if s, ok := v.(string); ok && t.Kind != StringParam {
		return ParseValue(s, t)
	}
	if id, ok := v.(Ident); ok && slices.Contains(t.OrEnum, string(id)) {
		return v, nil
	}
	ok := false
	switch t.Kind {
	case StringParam:
		_, ok = v.(string)
	case IntParam, SizeParam:
		_, ok = v.(int64)
		if n, isInt := v.(int64); isInt && t.Kind == SizeParam && n < 0 {
			return nil, errors.New("a size must not be negative")
		}
	case FloatParam:
		if n, isInt := v.(int64); isInt {
			return float64(n), nil
		}
		_, ok = v.(float64)
	case BoolParam:
		_, ok = v.(bool)
	case DurationParam:
		_, ok = v.(time.Duration)
	case EnumParam:
		id, isIdent := v.(Ident)
		if isIdent && !slices.Contains(t.Enum, string(id)) {
			return nil, fmt.Errorf("not one of %s", strings.Join(t.Enum, ", "))
		}
		ok = isIdent
	case SchemaParam:
		ok = true // the executor's and compiler's *types.Type
	case ListParam:
		l, isList := v.([]any)
		if !isList {
			break
		}
		out := make([]any, len(l))
		var err error
		for i, x := range l {
			if out[i], err = CheckValue(x, *t.Elem); err != nil {
				return nil, fmt.Errorf("item %d: %w", i+1, err)
			}
		}
		return out, nil
	case MapParam:
		m, isMap := v.(map[string]any)
		if !isMap {
			break
		}
		out := make(map[string]any, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) { // the first error is always the same
			c, err := CheckValue(m[k], *t.Elem)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			out[k] = c
		}
		return out, nil
	case BlockParam:
		m, isMap := v.(map[string]any)
		if !isMap {
			break
		}
		out, err := checkAttrs(m, t.Block)
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	if !ok {
		return nil, fmt.Errorf("is %T, want %s", v, t)
	}
	return v, nil
}

// checkAttrs converts the attributes in attrs that params declare and adds
// the defaults of the absent ones (see CheckValue). Others are kept.
func checkAttrs(attrs map[string]any, params []Param) (map[string]any, error) {
	out := make(map[string]any, len(attrs)+len(params))
	for k, v := range attrs {
		out[k] = v
	}
	for _, p := range params {
		v, set := attrs[p.Name]
		if !set {
			v = p.Default
		}
		if v == nil {
			continue
		}
		c, err := CheckValue(v, p.Type)
		if err != nil {
			var ve *valueError
			if errors.As(err, &ve) {
				return nil, &valueError{path: p.Name + "." + ve.path, err: ve.err}
			}
			return nil, &valueError{path: p.Name, err: err}
		}
		out[p.Name] = c
	}
	return out, nil
}

// Values returns attrs as a constructor reads them: each attribute the
// spec declares converted to its param's kind by [CheckValue] (a
// reference's text parsed as a literal of that kind), each absent one
// that has a default set to it, in nested blocks too. Attributes the spec
// does not declare are kept as they are; attrs is not modified. The error
// names the attribute, never its value.
func (s *Spec) Values(attrs map[string]any) (map[string]any, error) {
	return checkAttrs(attrs, s.Params)
}

// checkDefaults reports a default that is not a value of its param's type.
func checkDefaults(params []Param) error {
	for _, p := range params {
		if p.Default != nil {
			if _, err := CheckValue(p.Default, p.Type); err != nil {
				return fmt.Errorf("default of %q: %v", p.Name, err)
			}
		}
		if p.Type.Kind == BlockParam {
			if err := checkDefaults(p.Type.Block); err != nil {
				return fmt.Errorf("%s.%v", p.Name, err)
			}
		}
	}
	return nil
}
