package avro

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
)

// jnode is a JSON value of a schema text with the offset it starts at.
type jnode struct {
	off  int64
	keys []string // object keys, in order
	obj  map[string]*jnode
	arr  []*jnode
	str  string
	kind byte // '{', '[', '"', or 0 for other scalars
}

func parseNodes(src []byte) (*jnode, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	return parseNode(dec, src)
}

// tokenStart returns the offset of the next token after off.
func tokenStart(src []byte, off int64) int64 {
	for off < int64(len(src)) && strings.IndexByte(" \t\r\n,:", src[off]) >= 0 {
		off++
	}
	return off
}

func parseNode(dec *json.Decoder, src []byte) (*jnode, error) {
	n := &jnode{off: tokenStart(src, dec.InputOffset())}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n.kind = byte(t)
		if t == '{' {
			n.obj = map[string]*jnode{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := parseNode(dec, src)
				if err != nil {
					return nil, err
				}
				key, _ := k.(string)
				n.keys = append(n.keys, key)
				n.obj[key] = v
			}
		} else {
			for dec.More() {
				v, err := parseNode(dec, src)
				if err != nil {
					return nil, err
				}
				n.arr = append(n.arr, v)
			}
		}
		if _, err := dec.Token(); err != nil && err != io.EOF {
			return nil, err
		}
	case string:
		n.kind, n.str = '"', t
	}
	return n, nil
}

// FieldLine returns the line (from 1) of the field at path in the Avro
// schema text src, 0 when src has no such field. path is dotted from the
// top-level record ("customer.city"); "[]" after a name steps into an
// array's items, "{}" into a map's values.
func FieldLine(src []byte, path string) int {
	root, err := parseNodes(src)
	if err != nil || path == "" {
		return 0
	}
	defs := map[string]*jnode{}
	collectDefs(root, defs)
	schema := root
	var field *jnode
	for _, part := range strings.Split(path, ".") {
		name := strings.TrimRight(part, "[]{}")
		field = findField(schema, name, defs, 0)
		if field == nil {
			return 0
		}
		schema = field.obj["type"]
		for rest := part[len(name):]; len(rest) >= 2; rest = rest[2:] {
			key := "items"
			if rest[0] == '{' {
				key = "values"
			}
			schema = container(schema, key, defs)
		}
	}
	at := field.off
	if nm := field.obj["name"]; nm != nil {
		at = nm.off
	}
	return bytes.Count(src[:at], []byte("\n")) + 1
}

// collectDefs indexes the named types defined in n by name and full name.
func collectDefs(n *jnode, defs map[string]*jnode) {
	if n == nil {
		return
	}
	if n.kind == '{' {
		if nm := n.obj["name"]; nm != nil && nm.kind == '"' && n.obj["type"] != nil {
			if t := n.obj["type"]; t.kind == '"' && (t.str == "record" || t.str == "error") {
				defs[nm.str] = n
				if ns := n.obj["namespace"]; ns != nil && ns.kind == '"' {
					defs[ns.str+"."+nm.str] = n
				}
				if i := strings.LastIndexByte(nm.str, '.'); i >= 0 {
					defs[nm.str[i+1:]] = n
				}
			}
		}
		for _, k := range n.keys {
			collectDefs(n.obj[k], defs)
		}
	}
	for _, a := range n.arr {
		collectDefs(a, defs)
	}
}

// findField finds field name of record schema s (through unions and
// named references).
func findField(s *jnode, name string, defs map[string]*jnode, depth int) *jnode {
	if s == nil || depth > 32 {
		return nil
	}
	switch s.kind {
	case '"':
		if d := defs[s.str]; d != nil {
			return findField(d, name, defs, depth+1)
		}
	case '[':
		for _, b := range s.arr {
			if f := findField(b, name, defs, depth+1); f != nil {
				return f
			}
		}
	case '{':
		if fs := s.obj["fields"]; fs != nil {
			for _, f := range fs.arr {
				if nm := f.obj["name"]; f.kind == '{' && nm != nil && nm.str == name {
					return f
				}
			}
			return nil
		}
		return findField(s.obj["type"], name, defs, depth+1)
	}
	return nil
}

// container returns the items (key "items") or values ("values") schema
// of an array or map schema s, through unions.
func container(s *jnode, key string, defs map[string]*jnode) *jnode {
	if s == nil {
		return nil
	}
	switch s.kind {
	case '{':
		if v := s.obj[key]; v != nil {
			return v
		}
		return container(s.obj["type"], key, defs)
	case '[':
		for _, b := range s.arr {
			if v := container(b, key, defs); v != nil {
				return v
			}
		}
	}
	return nil
}
