package codec

import (
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/jsonschema"
)

// jsonSchemaCodec is json whose messages are validated against a JSON
// Schema: on decode before a value is taken, on encode after it is
// written.
type jsonSchemaCodec struct {
	json *jsonCodec
	v    *jsonschema.Validator
}

func newJSONSchema(schema *types.Type, opts Options) (*jsonSchemaCodec, error) {
	v, err := jsonschema.NewValidator(schema)
	if err != nil {
		return nil, err
	}
	c := newJSON(schema)
	c.keepInvalid = opts.KeepInvalidUTF8
	return &jsonSchemaCodec{json: c, v: v}, nil
}

// Decode implements Codec.
func (c *jsonSchemaCodec) Decode(data []byte) (map[string]any, error) {
	if err := c.v.Validate(data); err != nil {
		return nil, err
	}
	return c.json.Decode(data)
}

// Append implements Codec.
func (c *jsonSchemaCodec) Append(dst []byte, v map[string]any) ([]byte, error) {
	n := len(dst)
	out, err := c.json.Append(dst, c.v.OmitNulls(v))
	if err != nil {
		return nil, err
	}
	if err := c.v.Validate(out[n:]); err != nil {
		return nil, err
	}
	return out, nil
}
