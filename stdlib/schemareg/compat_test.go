package schemareg

import (
	"strings"
	"testing"

	havro "github.com/hamba/avro/v2"
)

func parse(t *testing.T, s string) havro.Schema {
	t.Helper()
	sc, err := havro.ParseWithCache(s, "", &havro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

const (
	base      = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}`
	addOpt    = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":["null","string"],"default":null}]}`
	addReq    = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":"string"}]}`
	promoted  = `{"type":"record","name":"R","fields":[{"name":"a","type":"double"}]}`
	nestedBad = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"sub","type":{"type":"record","name":"S","fields":[{"name":"x","type":"int"}]}}]}`
	nestedNew = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"sub","type":{"type":"record","name":"S","fields":[{"name":"x","type":"string"}]}}]}`
)

func TestCheckAvroLevels(t *testing.T) {
	v := func(n int, s string) Version { return Version{Version: n, Schema: parse(t, s)} }
	for _, c := range []struct {
		level, next string
		prev        []string
		want        string // "" compatible, else a fragment of the error
	}{
		{Backward, addOpt, []string{base}, ""},
		{Backward, addReq, []string{base}, "field b"},
		{Forward, addReq, []string{base}, ""},
		{Forward, base, []string{addReq}, "field b"},
		{Full, addOpt, []string{base}, ""},
		{Full, addReq, []string{base}, "field b"},
		{Backward, promoted, []string{base}, ""},
		{Forward, promoted, []string{base}, "field a"},
		{Backward, nestedNew, []string{nestedBad}, "field sub.x"},
		{None, addReq, []string{base}, ""},
		// Transitive levels check every version, others the latest only.
		{Backward, addReq, []string{base, addReq}, ""},
		{BackwardTransitive, addReq, []string{base, addReq}, "version 1"},
		{FullTransitive, addOpt, []string{base, addOpt}, ""},
	} {
		var prev []Version
		for i, p := range c.prev {
			prev = append(prev, v(i+1, p))
		}
		err := CheckAvro(c.level, parse(t, c.next), prev)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s after %v: %v", c.level, c.next, c.prev, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s after %v: got %v, want %q", c.level, c.next, c.prev, err, c.want)
		}
	}
}
