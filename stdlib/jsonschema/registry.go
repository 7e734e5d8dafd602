package jsonschema

import "encoding/json"

// ValidatorOf returns the validator of a JSON Schema document, such as a
// schema registry holds, with the documents it references (see
// [CompileWith]): a null of a top-level property the document does
// not require is left out when encoding.
func ValidatorOf(doc []byte, refs map[string][]byte) (*Validator, error) {
	s, err := CompileWith(doc, refs)
	if err != nil {
		return nil, err
	}
	v := &Validator{s: s, absent: map[string]bool{}}
	if root, err := parseOrdered(doc); err == nil {
		if o, ok := root.(*object); ok {
			if props, ok := o.get("properties").(*object); ok {
				for _, k := range props.keys {
					v.absent[k] = true
				}
			}
			if req, ok := o.get("required").([]any); ok {
				for _, r := range req {
					if name, ok := r.(string); ok {
						delete(v.absent, name)
					}
				}
			}
		}
	}
	return v, nil
}

// Title returns the document's top-level "title", the record name the
// schema registry's record subject strategies use, or "".
func Title(doc []byte) string {
	var d struct {
		Title string `json:"title"`
	}
	_ = json.Unmarshal(doc, &d)
	return d.Title
}
