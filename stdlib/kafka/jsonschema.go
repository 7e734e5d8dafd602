package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/schemareg"
)

// jsonSchemaDecoder decodes JSON messages in the wire format (magic byte,
// schema id, JSON). A message is validated against its writer's schema
// (the registry's) and, with a declared schema, decoded by the json_schema
// codec, which validates it against the declared one too (once when the
// two are the same document).
type jsonSchemaDecoder struct {
	decodeOnly
	reg     *schemareg.Client
	c       codec.Codec // declared json_schema codec, nil for keys
	decl    []byte      // the declared document, compacted
	writers idCache[*jsonschema.Validator]
}

func newJSONSchemaDecoder(reg *schemareg.Client, c codec.Codec, doc []byte) *jsonSchemaDecoder {
	return &jsonSchemaDecoder{decodeOnly: "json_schema", reg: reg, c: c, decl: compactJSON(doc)}
}

func compactJSON(doc []byte) []byte {
	if doc == nil {
		return nil
	}
	var b bytes.Buffer
	if json.Compact(&b, doc) != nil {
		return doc
	}
	return b.Bytes()
}

// jsonWriter returns the validator of the JSON schema id, nil when it is
// the declared document (which the declared codec validates against).
func jsonWriter(ctx context.Context, reg *schemareg.Client, id int, decl []byte) (*jsonschema.Validator, error) {
	s, refs, err := writerSchema(ctx, reg, id, sr.TypeJSON)
	if err != nil {
		return nil, err
	}
	if decl != nil && len(refs) == 0 && bytes.Equal(compactJSON([]byte(s.Schema)), decl) {
		return nil, nil
	}
	v, err := jsonschema.ValidatorOf([]byte(s.Schema), refDocs(refs))
	if err != nil {
		return nil, fmt.Errorf("schema id %d: %w", id, err)
	}
	return v, nil
}

func (d *jsonSchemaDecoder) value(data []byte) (any, error) {
	id, payload, err := schemareg.Parse(data)
	if err != nil {
		return nil, err
	}
	v, err := d.writers.get(id, func(ctx context.Context) (*jsonschema.Validator, error) {
		return jsonWriter(ctx, d.reg, id, d.decl)
	})
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := v.Validate(payload); err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
	}
	if d.c == nil {
		return codec.DecodeJSONValue(payload)
	}
	return d.c.Decode(payload)
}

// Decode implements codec.Codec.
func (d *jsonSchemaDecoder) Decode(data []byte) (map[string]any, error) {
	return decodedRecord(d.value(data))
}

// jsonSchema sets e up for format json_schema: the value is encoded by the
// sink's schema and validated against it and the subject's; a key is
// validated against the subject's.
func (e *subjectEncoder) jsonSchema(cfg stdlib.Config, isKey bool) error {
	var decl codec.Codec
	var doc []byte
	if !isKey {
		t := cfg.RecordType()
		c, err := codec.New("json_schema", t, codec.Options{})
		if err != nil {
			return err
		}
		decl, doc, e.record = c, t.Wire.Doc, jsonschema.Title(t.Wire.Doc)
		e.schema = func(context.Context) (sr.Schema, error) {
			return sr.Schema{Schema: string(doc), Type: sr.TypeJSON}, nil
		}
	}
	compact := compactJSON(doc)
	e.build = func(ctx context.Context, id int, s sr.Schema) (*wireSchema, error) {
		if s.Type != sr.TypeJSON {
			return nil, fmt.Errorf("schema id %d is %s, not JSON", id, s.Type)
		}
		refs, err := e.reg.References(ctx, s.References)
		if err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
		var v *jsonschema.Validator
		if decl == nil || len(refs) > 0 || !bytes.Equal(compactJSON([]byte(s.Schema)), compact) {
			if v, err = jsonschema.ValidatorOf([]byte(s.Schema), refDocs(refs)); err != nil {
				return nil, fmt.Errorf("schema id %d: %w", id, err)
			}
		}
		ws := &wireSchema{prefix: schemareg.Append(nil, id)}
		ws.enc = func(dst []byte, x any) ([]byte, error) {
			n := len(dst)
			var err error
			if m, ok := x.(map[string]any); ok && decl != nil {
				dst, err = decl.Append(dst, m)
			} else if decl != nil {
				err = fmt.Errorf("a JSON Schema record is a record, not %T", x)
			} else {
				var b []byte
				b, err = json.Marshal(x)
				dst = append(dst, b...)
			}
			if err != nil {
				return nil, err
			}
			if v != nil {
				if err := v.Validate(dst[n:]); err != nil {
					return nil, fmt.Errorf("schema id %d: %w", id, err)
				}
			}
			return dst, nil
		}
		return ws, nil
	}
	return nil
}

func refDocs(refs map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(refs))
	for k, v := range refs {
		out[k] = []byte(v)
	}
	return out
}
