package devreg

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/protobuf"
	"pipe.dev/pipe/stdlib/schemareg"
)

// The checks of the PROTOBUF and JSON schema types are simple ones:
//
//   - PROTOBUF: the schema compiles (with its references; the well-known
//     google/protobuf files are built in). A message of the same full name
//     in the versions checked must keep, for every field number both
//     have, the field's wire encoding (varint, zig-zag, 32-bit, 64-bit,
//     length-delimited) and whether it is a map.
//   - JSON: the schema compiles as a JSON Schema. BACKWARD (the new schema
//     reads what the old wrote): a top-level property the new schema
//     requires must be a property of the old one; FORWARD: the other way
//     round; FULL: both. A top-level property both have must keep its
//     "type".

const mainProto = "pipe.devreg.schema.proto"

// protoFile compiles a Protobuf schema with its references.
func (r *Registry) protoFile(text string, refs []reference) (protoreflect.FileDescriptor, error) {
	files, err := r.refTexts(refs)
	if err != nil {
		return nil, err
	}
	files[mainProto] = text
	return protobuf.CompileFiles(files, mainProto)
}

// refTexts maps the name of every schema refs reach to its text.
func (r *Registry) refTexts(refs []reference) (map[string]string, error) {
	out := map[string]string{}
	err := r.eachRef(refs, 0, func(name string, s *schema) error {
		out[name] = s.text
		return nil
	})
	return out, err
}

// validate checks that a PROTOBUF or JSON schema compiles.
func (r *Registry) validate(typ, text string, refs []reference) error {
	if typ == "PROTOBUF" {
		_, err := r.protoFile(text, refs)
		return err
	}
	files, err := r.refTexts(refs)
	if err != nil {
		return err
	}
	docs := map[string][]byte{}
	for k, v := range files {
		docs[k] = []byte(v)
	}
	_, err = jsonschema.CompileWith([]byte(text), docs)
	return err
}

// breaks returns why schema next may not follow prev (both of type typ)
// under the base level (BACKWARD, FORWARD or FULL), or "".
func (r *Registry) breaks(typ, base string, next, prev *schema) (string, error) {
	if typ == "PROTOBUF" {
		nf, err := r.protoFile(next.text, next.refs)
		if err != nil {
			return "", err
		}
		pf, err := r.protoFile(prev.text, prev.refs)
		if err != nil {
			return "", err
		}
		return protoBreaks(nf.Messages(), pf), nil
	}
	var n, p jsonObject
	if json.Unmarshal([]byte(next.text), &n) != nil || json.Unmarshal([]byte(prev.text), &p) != nil {
		return "", nil
	}
	if base == schemareg.Backward || base == schemareg.Full {
		if why := n.needs(p, "the new schema requires %q, which the old one does not have"); why != "" {
			return why, nil
		}
	}
	if base == schemareg.Forward || base == schemareg.Full {
		if why := p.needs(n, "the old schema requires %q, which the new one does not have"); why != "" {
			return why, nil
		}
	}
	for _, k := range slices.Sorted(maps.Keys(n.Properties)) {
		if old, ok := p.Properties[k]; ok && !typesEqual(old.Type, n.Properties[k].Type) {
			return fmt.Sprintf("property %q changes its type from %s to %s", k, old.Type, n.Properties[k].Type), nil
		}
	}
	return "", nil
}

func protoBreaks(msgs protoreflect.MessageDescriptors, prev protoreflect.FileDescriptor) string {
	for i := range msgs.Len() {
		md := msgs.Get(i)
		if old := protobuf.FindMessage(prev, md.FullName()); old != nil {
			if err := protobuf.Compatible(old, md); err != nil {
				return err.Error()
			}
		}
		if why := protoBreaks(md.Messages(), prev); why != "" {
			return why
		}
	}
	return ""
}

type jsonObject struct {
	Properties map[string]struct {
		Type json.RawMessage `json:"type"`
	} `json:"properties"`
	Required []string `json:"required"`
}

// needs returns a message naming a property o requires that other does
// not have, or "".
func (o jsonObject) needs(other jsonObject, msg string) string {
	for _, k := range o.Required {
		if _, ok := other.Properties[k]; !ok && !slices.Contains(other.Required, k) {
			return fmt.Sprintf(msg, k)
		}
	}
	return ""
}

func typesEqual(a, b json.RawMessage) bool {
	return strings.Join(strings.Fields(string(a)), "") == strings.Join(strings.Fields(string(b)), "")
}

// textIncompatibility checks a PROTOBUF or JSON schema against the live
// versions of sub of the same type (only: that one version).
func (r *Registry) textIncompatibility(sub *subject, s *schema, level string, only *version) (string, error) {
	if level == schemareg.None {
		return "", nil
	}
	var prev []version
	for _, v := range sub.versions {
		if !v.deleted && (only == nil || v.version == only.version) && r.schemas[v.id-1].typ == s.typ {
			prev = append(prev, v)
		}
	}
	if only == nil && !strings.HasSuffix(level, "_TRANSITIVE") && len(prev) > 1 {
		prev = prev[len(prev)-1:]
	}
	base := strings.TrimSuffix(level, "_TRANSITIVE")
	for i := len(prev) - 1; i >= 0; i-- {
		why, err := r.breaks(s.typ, base, s, r.schemas[prev[i].id-1])
		if err != nil || why != "" {
			if why != "" {
				why = fmt.Sprintf("incompatible with version %d under %s: %s", prev[i].version, level, why)
			}
			return why, err
		}
	}
	return "", nil
}
