package codec

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
)

// checkFields decodes data as fields with the hint names and checks that
// it agrees with Decode: the same error or none, the same map (the last
// of a repeated name wins), same only when the keys are names (and then
// always when no name has a character JSON escapes), and
// AppendFields writing what Append writes.
func checkFields(t *testing.T, c *jsonCodec, data []byte, names []string) []string {
	t.Helper()
	m, err := c.Decode(data)
	keys, vals, same, ferr := c.DecodeFieldsOwned(bytes.Clone(data), names, nil, nil)
	if (err == nil) != (ferr == nil) {
		t.Fatalf("%q: Decode err %v, DecodeFieldsOwned err %v", data, err, ferr)
	}
	if err != nil {
		return nil
	}
	got := make(map[string]any, len(keys))
	for i, k := range keys {
		got[k] = vals[i]
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("%q with names %q: fields %v, Decode %v", data, names, got, m)
	}
	plain := !slices.ContainsFunc(names, func(n string) bool { return !bytes.Equal(appendString(nil, n), []byte(`"`+n+`"`)) || n == "é" })
	if equal := slices.Equal(keys, names); same && !equal || !same && equal && plain && names != nil {
		t.Fatalf("%q with names %q: same %v, keys %q", data, names, same, keys)
	}
	if len(m) == len(keys) { // distinct names
		a, err1 := c.AppendFields(nil, keys, vals)
		b, err2 := c.Append(nil, m)
		if !bytes.Equal(a, b) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("%q: AppendFields %s (%v), Append %s (%v)", data, a, err1, b, err2)
		}
	}
	return keys
}

func TestJSONFieldsAgreeWithMaps(t *testing.T) {
	msgs := []string{
		benchLine,
		benchLine,
		`{"id":2,"user":"u2","amount":10.5,"country":"DE","event":"purchase","ts":"x"}`,
		`{"id":2,"user":"u2"}`,
		`{"i":2,"user":"u2"}`,
		`{"idx":2,"user":"u2"}`,
		`{ "id" : 2 , "user":"u2" }`,
		`{"id":1,"id":2}`,
		`{"a\"b":1,"c\\d":2,"é":3,"e\u0301":4}`,
		`{"a\"b":1,"c\\d":2,"é":3,"e\u0301":4}`,
		`{"a\"b":1,"c\\d":2,"é":3}`,
		`{}`,
		`{}`,
		`{"a":{"b":[1,"x",null,true]},"c":-1.5e-9}`,
		`{"a":1`,
		`{"a"`,
		`[1]`,
		``,
		`{"a":1} x`,
		`{"id":2,"user":"u2\u0000"}`,
	}
	c := newJSON(nil)
	var names []string
	for _, s := range msgs {
		if keys := checkFields(t, c, []byte(s), names); keys != nil {
			names = slices.Clone(keys)
		}
		checkFields(t, c, []byte(s), nil)
		checkFields(t, c, []byte(s), []string{"id", "user", "amount"})
	}
}

func FuzzJSONFields(f *testing.F) {
	f.Add([]byte(benchLine))
	f.Add([]byte(`{"id":1,"user":"x","a":{"b":"\u00e9"},"id":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newJSON(nil)
		checkFields(t, c, data, []string{"id", "user", "a"})
		checkFields(t, c, data, []string{"id", "user", "a"})
		checkFields(t, c, data, nil)
	})
}
