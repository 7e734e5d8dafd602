package testrun

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/compiler/plan"
)

// goValue converts a static plan value (a test record field) to the
// run-time representation of lang/types.
func goValue(v *plan.Value) any {
	if v == nil {
		return nil
	}
	switch v.Kind {
	case plan.StringValue, plan.IdentValue, plan.SecretValue, plan.SchemaValue:
		return v.Str
	case plan.IntValue, plan.SizeValue:
		return v.Int
	case plan.DurationValue:
		return time.Duration(v.Int)
	case plan.FloatValue:
		return v.Float
	case plan.BoolValue:
		return v.Bool
	case plan.ListValue:
		out := make([]any, len(v.List))
		for i, x := range v.List {
			out[i] = goValue(x)
		}
		return out
	case plan.MapValue:
		out := make(map[string]any, len(v.Map))
		for _, e := range v.Map {
			out[e.Key] = goValue(e.Value)
		}
		return out
	}
	return nil
}

// normalize turns a run-time value into a JSON-like form for comparison and
// display: numbers as float64 (NaN and infinities as the strings "NaN",
// "+Inf", "-Inf"), times as RFC 3339 strings, bytes as strings.
func normalize(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case int:
		return float64(x)
	case int32:
		return float64(x)
	case float32:
		return normalize(float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64) // as JSON can hold it
		}
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case []byte:
		return string(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	}
	return v
}

// match reports whether actual holds every field of expected with an equal
// value (maps: subset, recursively; lists: same length, element-wise).
// It returns the path of the first mismatch.
func match(expected, actual any, path string) (string, bool) {
	switch e := expected.(type) {
	case map[string]any:
		a, ok := actual.(map[string]any)
		if !ok {
			return path, false
		}
		keys := make([]string, 0, len(e))
		for k := range e {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			// An absent field is not a null one: JSON output writes
			// the two apart (see the codec), and so does a test.
			av, present := a[k]
			if !present {
				return p, false
			}
			if where, ok := match(e[k], av, p); !ok {
				return where, false
			}
		}
		return "", true
	case []any:
		a, ok := actual.([]any)
		if !ok || len(a) != len(e) {
			return path, false
		}
		for i := range e {
			if where, ok := match(e[i], a[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return where, false
			}
		}
		return "", true
	case float64:
		a, ok := actual.(float64)
		return path, ok && (a == e || math.Abs(a-e) <= 1e-9*math.Max(math.Abs(a), math.Abs(e)))
	case string:
		a, ok := actual.(string)
		if ok && a != e {
			// timestamps: compare instants, not spellings
			te, err1 := time.Parse(time.RFC3339Nano, e)
			ta, err2 := time.Parse(time.RFC3339Nano, a)
			if err1 == nil && err2 == nil {
				return path, te.Equal(ta)
			}
		}
		return path, ok && a == e
	default:
		return path, expected == actual
	}
}

// project keeps only the fields of actual that expected lists (for diffs
// that show what the test looked at).
func project(expected, actual any) any {
	e, ok1 := expected.(map[string]any)
	a, ok2 := actual.(map[string]any)
	if !ok1 || !ok2 {
		return actual
	}
	out := make(map[string]any, len(e))
	for k, ev := range e {
		if av, ok := a[k]; ok {
			out[k] = project(ev, av)
		}
	}
	return out
}

// render prints one record per line as compact JSON with sorted keys.
func render(records []any) string {
	var b strings.Builder
	for _, r := range records {
		data, err := json.Marshal(r) // map keys are sorted by encoding/json
		if err != nil {
			data = []byte(fmt.Sprint(r))
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}
