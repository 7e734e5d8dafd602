package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/schemareg"
	"pipe.dev/pipe/stdlib/tlsconf"
)

// registryTLS is tlsconf's block under the name registry_tls.
var registryTLS = func() stdlib.Param {
	p := tlsconf.Param
	p.Name = "registry_tls"
	p.Doc = "TLS to the schema registry"
	return p
}()

// registryParams are the schema registry attributes shared by source and
// sink (format = avro).
var registryParams = []stdlib.Param{
	{Name: "registry", Type: stdlib.String, Doc: "schema registry URL (format or key_format avro): messages are in the Confluent wire format, magic byte 0 and a 4-byte schema id before the Avro payload"},
	{Name: "registry_auth", Type: stdlib.Block(
		stdlib.Param{Name: "username", Type: stdlib.String, Doc: "basic authentication user"},
		stdlib.Param{Name: "password", Type: stdlib.String, Secret: true, Doc: "basic authentication password"},
		stdlib.Param{Name: "token", Type: stdlib.String, Secret: true, Doc: "bearer token (instead of username and password)"},
	), Doc: "authenticate to the schema registry"},
	registryTLS,
	{Name: "subject_strategy", Type: stdlib.Enum(schemareg.TopicName, schemareg.RecordName, schemareg.TopicRecordName), Default: stdlib.Ident(schemareg.TopicName),
		Doc: "subject a schema is registered under: topic (<topic>-value, <topic>-key), record (the record's full name), topic_record (<topic>-<record>)"},
}

// checkRegistry checks the registry attributes of a source or sink.
func checkRegistry(attrs map[string]any) []stdlib.AttrError {
	errs, used := checkRegistryFormats(attrs)
	if !used {
		for _, a := range []string{"registry", "registry_auth", "registry_tls", "schema_id", "register"} {
			if v, ok := attrs[a]; ok && v != false { // register's default is false
				errs = append(errs, stdlib.AttrError{Attr: a, Message: a + " applies to the formats avro, protobuf and json_schema through a registry (registry = \"http://…\")"})
			}
		}
	}
	if auth, ok := attrs["registry_auth"].(map[string]any); ok {
		_, tok := auth["token"]
		_, user := auth["username"]
		_, pass := auth["password"]
		switch {
		case tok && (user || pass):
			errs = append(errs, stdlib.AttrError{Attr: "registry_auth.token", Message: "set token or username and password, not both"})
		case user != pass:
			errs = append(errs, stdlib.AttrError{Attr: "registry_auth", Message: "basic authentication needs both username and password"})
		}
	}
	if b, ok := attrs["registry_tls"].(map[string]any); ok {
		for _, e := range tlsconf.Check(map[string]any{"tls": b}) {
			e.Attr = "registry_" + e.Attr
			errs = append(errs, e)
		}
	}
	return errs
}

// checkSinkInput checks that register = true has a record type with an
// Avro schema to register, and that format = debezium writes change records.
func checkSinkInput(attrs map[string]any, records *types.Type) []stdlib.AttrError {
	if errs := checkSubjectName(attrs, records); errs != nil {
		return errs
	}
	if f, _ := attrs["format"].(stdlib.Ident); f != "avro" || attrs["register"] != true {
		return stdlib.CheckDebeziumInput(attrs, records)
	}
	if records == nil || records.Kind != types.Record || len(records.Fields) == 0 {
		return []stdlib.AttrError{{Attr: "register", Message: "register = true needs the type of the records written: declare the sink's schema"}}
	}
	if _, err := avro.SchemaOf(records); err != nil {
		return []stdlib.AttrError{{Attr: "register", Message: "register = true: " + err.Error()}}
	}
	return nil
}

// newRegistry returns the registry client of cfg, or nil when it sets no
// registry.
func newRegistry(cfg stdlib.Config) (*schemareg.Client, error) {
	url := cfg.String("registry")
	if url == "" {
		return nil, nil
	}
	o := schemareg.Options{URL: url}
	if a, ok := cfg.Block("registry_auth"); ok {
		o.Username, o.Password, o.Token = a.String("username"), a.String("password"), a.String("token")
	}
	if t, ok := cfg.Block("registry_tls"); ok {
		tc, err := tlsconf.Client(t)
		if err != nil {
			return nil, fmt.Errorf("registry_tls: %w", err)
		}
		o.TLS = tc
	}
	return schemareg.New(o)
}

// lookupTimeout bounds a registry lookup made while decoding.
const lookupTimeout = 30 * time.Second

// avroDecoder decodes wire-format Avro messages into records of type t
// (nil: as the writer's schema maps), resolving each writer schema against
// t once. It implements codec.Codec for decoding.
type avroDecoder struct {
	reg *schemareg.Client
	t   *types.Type
	mu  sync.Mutex
	ok  map[int]error // whether each writer schema resolves to t
}

func newAvroDecoder(reg *schemareg.Client, t *types.Type) *avroDecoder {
	return &avroDecoder{reg: reg, t: t, ok: map[int]error{}}
}

func (d *avroDecoder) writer(id int) (havro.Schema, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	s, err := d.reg.AvroByID(ctx, id)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rerr, seen := d.ok[id]
	if !seen {
		if rerr = avro.Resolvable(s, d.t); rerr != nil {
			rerr = fmt.Errorf("writer schema id %d does not resolve to the declared schema: %w", id, rerr)
		}
		d.ok[id] = rerr
	}
	return s, rerr
}

func (d *avroDecoder) value(data []byte) (any, error) {
	id, payload, err := schemareg.Parse(data)
	if err != nil {
		return nil, err
	}
	w, err := d.writer(id)
	if err != nil {
		return nil, err
	}
	if derefRecord(w) {
		return avro.Decode(w, d.t, payload)
	}
	return avro.DecodeValue(w, payload)
}

func derefRecord(s havro.Schema) bool {
	if r, ok := s.(*havro.RefSchema); ok {
		s = r.Schema()
	}
	return s.Type() == havro.Record
}

func (d *avroDecoder) Decode(data []byte) (map[string]any, error) {
	v, err := d.value(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return map[string]any{"value": v}, nil
	}
	return m, nil
}

func (d *avroDecoder) Append([]byte, map[string]any) ([]byte, error) {
	return nil, errors.New("avro: a decoder does not encode")
}

// avroEncoder encodes records in the wire format with the writer schema of
// each subject: a pinned id, the subject's latest version, or the
// record type's schema registered (register = true) after a
// compatibility check.
type avroEncoder struct {
	reg      *schemareg.Client
	strategy string
	isKey    bool
	pinned   int         // schema_id, 0 when not set
	register bool        // register the record type's schema
	t        *types.Type // the sink's record type (register, record names)
	mu       sync.Mutex
	subjects map[string]*subjectEnc
}

type subjectEnc struct {
	id  int
	enc *avro.Encoder
	err error
}

func (e *avroEncoder) recordName() string {
	if e.t != nil && e.t.Name != "" {
		return e.t.Name
	}
	return "Record"
}

// forTopic returns the encoder for topic's subject, looking it up once.
func (e *avroEncoder) forTopic(ctx context.Context, topic string) (*subjectEnc, error) {
	subject := schemareg.Subject(e.strategy, topic, e.recordName(), e.isKey)
	if e.pinned != 0 {
		subject = ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if se, ok := e.subjects[subject]; ok {
		return se, se.err
	}
	se := &subjectEnc{}
	var s havro.Schema
	var err error
	switch {
	case e.pinned != 0:
		se.id = e.pinned
		s, err = e.reg.AvroByID(ctx, e.pinned)
	case e.register:
		s, err = avro.SchemaOf(e.t)
		if err == nil {
			se.id, err = e.reg.Register(ctx, subject, s.String())
		}
	default:
		se.id, s, err = e.reg.Version(ctx, subject, -1)
	}
	if err == nil {
		se.enc = avro.NewEncoder(s)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // not remembered: a later attempt may succeed
		}
		se.err = err
	}
	e.subjects[subject] = se
	return se, se.err
}

// appendValue appends the wire-format encoding of v for topic.
func (e *avroEncoder) appendValue(dst []byte, topic string, v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	se, err := e.forTopic(ctx, topic)
	if err != nil {
		return nil, err
	}
	start := len(dst)
	dst = schemareg.Append(dst, se.id)
	out, err := se.enc.AppendValue(dst, v)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}
