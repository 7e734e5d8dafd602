package avro

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
)

// WireFormat is the types.Wire format of a record type read from an .avsc
// file: its Doc is a JSON array of the schema files' texts (as strings,
// unchanged), the files it references first and the schema itself last,
// so that a plan carries the whole schema (defaults, enum symbols,
// logical types) without the files.
const WireFormat = "avro"

// maxRefs bounds the referenced files one schema may pull in.
const maxRefs = 64

var unknownType = regexp.MustCompile(`avro: unknown type: ([A-Za-z_][A-Za-z0-9_.]*)`)

// LoadFile reads the Avro schema file path and the schema files it
// references, and returns its record type with the schema kept in
// Type.Wire. A named type the file uses but does not define (a schema
// registry reference) is read from "<full name>.avsc" in the file's
// directory (for a name without a namespace, also any "<namespace>.<name>.avsc"
// there), as `pipe schema pull --registry` writes references; such files
// may reference others the same way.
func LoadFile(path string, read func(string) ([]byte, error)) (*types.Type, error) {
	docs, s, err := loadDocs(path, read)
	if err != nil {
		return nil, err
	}
	if s.Type() != havro.Record {
		return nil, fmt.Errorf("the schema is a %s, not a record", s.Type())
	}
	t, err := TypeOf(s)
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(docs)
	if err != nil {
		return nil, err
	}
	t.Wire = &types.Wire{Format: WireFormat, Doc: doc}
	return t, nil
}

// loadDocs parses the schema of path, loading referenced files into one
// cache first; it returns the texts in parse order.
func loadDocs(path string, read func(string) ([]byte, error)) ([]string, havro.Schema, error) {
	src, err := read(path)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Dir(path)
	cache := &havro.SchemaCache{}
	var docs []string
	loaded := map[string]bool{}
	// pending is the stack of texts being parsed: a text whose parse
	// names an unknown type waits for that type's file.
	pending := [][]byte{src}
	names := []string{""} // the file of each pending text, "" for path's
	for len(pending) > 0 {
		text := pending[len(pending)-1]
		s, err := havro.ParseBytesWithCache(text, "", cache)
		if err == nil {
			docs = append(docs, string(text))
			pending, names = pending[:len(pending)-1], names[:len(names)-1]
			if len(pending) == 0 {
				return docs, s, nil
			}
			continue
		}
		m := unknownType.FindStringSubmatch(err.Error())
		if m == nil {
			if f := names[len(names)-1]; f != "" {
				return nil, nil, fmt.Errorf("%s: %w", f, err)
			}
			return nil, nil, err
		}
		ref, rsrc, rerr := findRef(dir, m[1], read)
		if rerr != nil {
			return nil, nil, fmt.Errorf("type %s is not defined in the schema: %v", m[1], rerr)
		}
		if loaded[ref] || len(loaded) >= maxRefs {
			return nil, nil, fmt.Errorf("type %s: %s does not define it", m[1], filepath.Base(ref))
		}
		loaded[ref] = true
		pending, names = append(pending, rsrc), append(names, filepath.Base(ref))
	}
	return nil, nil, errors.New("no schema")
}

// findRef reads the file of named type name in dir.
func findRef(dir, name string, read func(string) ([]byte, error)) (string, []byte, error) {
	path := filepath.Join(dir, name+".avsc")
	src, err := read(path)
	if err == nil {
		return path, src, nil
	}
	if !strings.Contains(name, ".") {
		if ms, _ := filepath.Glob(filepath.Join(dir, "*."+name+".avsc")); len(ms) == 1 {
			if src, err := read(ms[0]); err == nil {
				return ms[0], src, nil
			}
		}
	}
	return "", nil, fmt.Errorf("no file %s.avsc beside it", name)
}

// WireSchema returns the Avro schema kept in t.Wire by LoadFile, and nil
// when t was not read from an .avsc file.
func WireSchema(t *types.Type) (havro.Schema, error) {
	docs := WireDocs(t)
	if docs == nil {
		return nil, nil
	}
	cache := &havro.SchemaCache{}
	var s havro.Schema
	for _, d := range docs {
		var err error
		if s, err = havro.ParseWithCache(d, "", cache); err != nil {
			return nil, fmt.Errorf("avro schema of %s: %w", t.Name, err)
		}
	}
	return s, nil
}

// WireDocs returns the schema texts kept in t.Wire by LoadFile, the
// referenced ones first and t's own last; nil when t has none.
func WireDocs(t *types.Type) []string {
	if t == nil || t.Wire == nil || t.Wire.Format != WireFormat {
		return nil
	}
	var docs []string
	if json.Unmarshal(t.Wire.Doc, &docs) != nil || len(docs) == 0 {
		return nil
	}
	return docs
}
