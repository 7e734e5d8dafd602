package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/protobuf"
	"pipe.dev/pipe/stdlib/schemareg"
)

// The formats that go through the schema registry: avro always, protobuf
// and json_schema when registry is set (without it they are the plain
// payload). Which decoder or encoder a source or sink uses is settled once
// at setup; the json format never reaches this file.

// keyDecoder decodes a message key in a registry's wire format.
type keyDecoder interface {
	value(data []byte) (any, error)
}

// decodedRecord is the record a value decoder returned with err: a
// decoder of a declared record type returns only records.
func decodedRecord(v any, err error) (map[string]any, error) {
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

// decodeOnly gives a registry decoder of the format it names the Append
// of a codec.Codec, which refuses: a decoder does not encode.
type decodeOnly string

// Append implements codec.Codec.
func (f decodeOnly) Append([]byte, map[string]any) ([]byte, error) {
	return nil, errors.New(string(f) + ": a decoder does not encode")
}

// wireEncoder encodes a key or value in a registry's wire format with the
// writer schema of the topic's subject.
type wireEncoder interface {
	appendValue(dst []byte, topic string, v any) ([]byte, error)
	// open settles the writer schema of topic's subject.
	open(ctx context.Context, topic string) error
	// fixed reports whether the writer schema does not depend on the topic
	// (schema_id).
	fixed() bool
}

func (e *avroEncoder) open(ctx context.Context, topic string) error {
	_, err := e.forTopic(ctx, topic)
	return err
}

func (e *avroEncoder) fixed() bool { return e.pinned != 0 }

// viaRegistry reports whether format (of format or key_format) goes
// through the registry.
func viaRegistry(cfg stdlib.Config, format string) bool {
	return avroFormat(format) || (cfg.String("registry") != "" && (format == "protobuf" || format == "json_schema"))
}

// newKeyDecoder returns the decoder of key_format when it goes through the
// registry, else nil.
func newKeyDecoder(cfg stdlib.Config, reg *schemareg.Client) (keyDecoder, error) {
	switch f := cfg.String("key_format"); {
	case f == "avro":
		return newAvroDecoder(reg, nil)
	case !viaRegistry(cfg, f):
		return nil, nil
	case f == "protobuf":
		return newProtoDecoder(reg, nil), nil
	default:
		return newJSONSchemaDecoder(reg, nil, nil), nil
	}
}

// newValueDecoder returns the decoder of format (avro, debezium_avro,
// protobuf, json_schema) through the registry.
func newValueDecoder(cfg stdlib.Config, reg *schemareg.Client) (codec.Codec, error) {
	switch cfg.String("format") {
	case "avro":
		return newAvroDecoder(reg, cfg.Schema)
	case debeziumAvro:
		return newDebeziumAvroDecoder(reg, cfg.Schema)
	case "protobuf":
		c, err := protobuf.NewCodec(cfg.Schema)
		if err != nil {
			return nil, err
		}
		return newProtoDecoder(reg, c), nil
	default:
		c, err := codec.New("json_schema", cfg.Schema, codec.Options{})
		if err != nil {
			return nil, err
		}
		return newJSONSchemaDecoder(reg, c, cfg.Schema.Wire.Doc), nil
	}
}

// newEncoder returns the encoder of the key (isKey) or value format
// through the registry.
func newEncoder(cfg stdlib.Config, reg *schemareg.Client, isKey bool) (wireEncoder, error) {
	format := cfg.String("format")
	if isKey {
		format = cfg.String("key_format")
	}
	if avroFormat(format) {
		e := &avroEncoder{reg: reg, strategy: cfg.String("subject_strategy"), isKey: isKey,
			t: cfg.RecordType(), subjects: map[string]*subjectEnc{}}
		if !isKey {
			e.pinned, e.register = int(cfg.Int("schema_id")), cfg.Bool("register")
			if e.register && cfg.RecordType() == nil {
				return nil, errors.New("register = true needs the record type: declare the sink's schema")
			}
			if format == debeziumAvro {
				e.schemaOf, e.wrap = debeziumEnvelopeSchema, debeziumEnvelope
			}
		}
		return e, nil
	}
	e := &subjectEncoder{reg: reg, strategy: cfg.String("subject_strategy"), isKey: isKey,
		subjects: map[string]*wireSchema{}, byTopic: map[string]*wireSchema{}}
	if !isKey {
		e.pinned, e.register = int(cfg.Int("schema_id")), cfg.Bool("register")
	}
	var err error
	if format == "protobuf" {
		err = e.protobuf(cfg, isKey)
	} else {
		err = e.jsonSchema(cfg, isKey)
	}
	return e, err
}

// subjectEncoder encodes in the wire format of a format whose schemas the
// registry keeps as text (protobuf, json_schema), with a pinned id, the
// subject's latest version, or the declared schema registered.
type subjectEncoder struct {
	reg      *schemareg.Client
	strategy string
	isKey    bool
	pinned   int
	register bool
	record   string // the record name of the record strategies
	// schema is what register = true registers.
	schema func(ctx context.Context) (sr.Schema, error)
	// build makes the encoding of writer schema s (id).
	build func(ctx context.Context, id int, s sr.Schema) (*wireSchema, error)

	mu       sync.Mutex
	subjects map[string]*wireSchema
	byTopic  map[string]*wireSchema // the same, by topic
}

// wireSchema encodes values with one writer schema.
type wireSchema struct {
	prefix []byte // the frame: magic byte, schema id, Protobuf's indexes
	enc    func(dst []byte, v any) ([]byte, error)
	err    error
}

func (e *subjectEncoder) fixed() bool { return e.pinned != 0 }

func (e *subjectEncoder) open(ctx context.Context, topic string) error {
	_, err := e.forTopic(ctx, topic)
	return err
}

func (e *subjectEncoder) subject(topic string) (string, error) {
	if e.pinned != 0 {
		return "", nil
	}
	if e.record == "" && e.strategy != schemareg.TopicName {
		return "", fmt.Errorf("subject_strategy %s needs a record name: the schema has none", e.strategy)
	}
	return schemareg.Subject(e.strategy, topic, e.record, e.isKey), nil
}

// cached returns the writer of topic's subject when it is settled.
func (e *subjectEncoder) cached(topic string) (*wireSchema, error) {
	e.mu.Lock()
	ws := e.byTopic[topic]
	e.mu.Unlock()
	if ws == nil {
		return nil, nil
	}
	return ws, ws.err
}

func (e *subjectEncoder) forTopic(ctx context.Context, topic string) (*wireSchema, error) {
	subject, err := e.subject(topic)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ws, ok := e.subjects[subject]; ok {
		e.byTopic[topic] = ws
		return ws, ws.err
	}
	var id int
	var s sr.Schema
	switch {
	case e.pinned != 0:
		id = e.pinned
		s, err = e.reg.ByID(ctx, id)
	case e.register:
		if s, err = e.schema(ctx); err == nil {
			id, _, err = e.reg.Create(ctx, subject, s)
		}
	default:
		var ss sr.SubjectSchema
		ss, err = e.reg.ByVersion(ctx, subject, -1)
		id, s = ss.ID, ss.Schema
	}
	var ws *wireSchema
	if err == nil {
		ws, err = e.build(ctx, id, s)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // not remembered: a later attempt may succeed
		}
		ws = &wireSchema{err: err}
	}
	e.subjects[subject] = ws
	e.byTopic[topic] = ws
	return ws, ws.err
}

func (e *subjectEncoder) appendValue(dst []byte, topic string, v any) ([]byte, error) {
	ws, err := e.cached(topic)
	if ws == nil && err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		ws, err = e.forTopic(ctx, topic)
		cancel()
	}
	if err != nil {
		return nil, err
	}
	start := len(dst)
	dst = append(dst, ws.prefix...)
	out, err := ws.enc(dst, v)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

// idCache remembers, per writer schema id, what a decoder made of it (an
// error too, except a failed lookup, which is tried again).
type idCache[T any] struct {
	mu   sync.Mutex
	byID map[int]idEntry[T]
}

type idEntry[T any] struct {
	v   T
	err error
}

func (c *idCache[T]) get(id int, make func(ctx context.Context) (T, error)) (T, error) {
	c.mu.Lock()
	e, ok := c.byID[id]
	c.mu.Unlock()
	if ok {
		return e.v, e.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	e.v, e.err = make(ctx)
	var lookup *lookupError
	if errors.As(e.err, &lookup) {
		return e.v, e.err
	}
	c.mu.Lock()
	if c.byID == nil {
		c.byID = map[int]idEntry[T]{}
	}
	c.byID[id] = e
	c.mu.Unlock()
	return e.v, e.err
}

// lookupError is a failed registry lookup: not remembered.
type lookupError struct{ err error }

func (e *lookupError) Error() string { return e.err.Error() }
func (e *lookupError) Unwrap() error { return e.err }

// writerSchema looks id up with the texts of its references.
func writerSchema(ctx context.Context, reg *schemareg.Client, id int, want sr.SchemaType) (sr.Schema, map[string]string, error) {
	s, err := reg.ByID(ctx, id)
	if err != nil {
		return s, nil, &lookupError{err}
	}
	if s.Type != want {
		return s, nil, fmt.Errorf("schema id %d is %s, not %s", id, s.Type, want)
	}
	refs, err := reg.References(ctx, s.References)
	if err != nil {
		return s, nil, &lookupError{fmt.Errorf("schema id %d: %w", id, err)}
	}
	return s, refs, nil
}

// checkRegistryFormats checks that format and key_format have the
// registry they need (avro always; a key's protobuf or json_schema, which
// has no declared schema, too) and reports whether any of them goes
// through it.
func checkRegistryFormats(attrs map[string]any) (errs []stdlib.AttrError, used bool) {
	_, hasReg := attrs["registry"]
	for _, a := range []string{"format", "key_format"} {
		f, _ := attrs[a].(stdlib.Ident)
		switch {
		case avroFormat(string(f)), a == "key_format" && (f == "protobuf" || f == "json_schema"):
			used = true
			if !hasReg {
				errs = append(errs, stdlib.AttrError{Attr: a, Message: fmt.Sprintf("%s %s needs registry = \"http://…\" (the schema registry)", a, f)})
			}
		case f == "protobuf", f == "json_schema":
			used = used || hasReg
		}
	}
	vf, _ := attrs["format"].(stdlib.Ident)
	if used && !avroFormat(string(vf)) && !(hasReg && (vf == "protobuf" || vf == "json_schema")) {
		for _, a := range []string{"schema_id", "register"} {
			if v, ok := attrs[a]; ok && v != false {
				errs = append(errs, stdlib.AttrError{Attr: a, Message: a + " applies to the value's format through the registry (format avro, protobuf or json_schema)"})
			}
		}
	}
	return errs, used
}

// checkKeySubject checks that a sink's protobuf or json_schema key, which
// has no declared schema, has its subject named by the topic.
func checkKeySubject(attrs map[string]any) []stdlib.AttrError {
	if kf, _ := attrs["key_format"].(stdlib.Ident); kf == "protobuf" || kf == "json_schema" {
		if st, _ := attrs["subject_strategy"].(stdlib.Ident); st != "" && st != schemareg.TopicName {
			return []stdlib.AttrError{{Attr: "subject_strategy", Message: fmt.Sprintf("subject_strategy %s names a subject by the record, and a %s key has no declared schema: use topic", st, kf)}}
		}
	}
	return nil
}

// checkSubjectName checks that a sink whose subject is named by the record
// (subject_strategy record or topic_record) has a record name: a JSON
// Schema's "title".
func checkSubjectName(attrs map[string]any, records *types.Type) []stdlib.AttrError {
	st, _ := attrs["subject_strategy"].(stdlib.Ident)
	if f, _ := attrs["format"].(stdlib.Ident); f != "json_schema" || st == "" || st == schemareg.TopicName || attrs["registry"] == nil || attrs["schema_id"] != nil {
		return nil
	}
	if records == nil || records.Wire == nil || records.Wire.Format != "json_schema" || jsonschema.Title(records.Wire.Doc) != "" {
		return nil
	}
	return []stdlib.AttrError{{Attr: "subject_strategy", Message: fmt.Sprintf("subject_strategy %s names the subject by the record, and the JSON Schema has no \"title\": give it one or use topic", st)}}
}
