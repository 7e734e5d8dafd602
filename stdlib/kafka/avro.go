package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
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
	if f, _ := attrs["format"].(stdlib.Ident); !avroFormat(string(f)) {
		for _, a := range []string{"compat_with", "compatibility"} {
			if _, ok := attrs[a]; ok {
				errs = append(errs, stdlib.AttrError{Attr: a, Message: a + " applies to format avro only"})
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

// compatParams are the kafka sink's attributes of the offline
// compatibility check (pipe check, format = avro).
var compatParams = []stdlib.Param{
	{Name: "compat_with", Type: stdlib.String, SchemaFile: true,
		Doc: "format avro: an .avsc file holding the subject's schema (pulled and pinned): pipe check reports a schema the sink writes that breaks compatibility with it"},
	{Name: "compatibility", Type: stdlib.Enum("backward", "forward", "full"),
		Doc: "compat_with's rule (default backward): backward, the sink's schema reads what compat_with's wrote; forward, compat_with's reads what the sink writes; full, both"},
}

// checkSinkInput checks that register = true has a record type with an
// Avro schema to register, that the schema the sink writes keeps the
// compatibility declared against compat_with, and that format = debezium
// writes change records.
func checkSinkInput(attrs map[string]any, records *types.Type) []stdlib.AttrError {
	if errs := checkSubjectName(attrs, records); errs != nil {
		return errs
	}
	f, _ := attrs["format"].(stdlib.Ident)
	if f == debeziumAvro {
		return checkDebeziumAvroInput(attrs, records)
	}
	if f != "avro" {
		return stdlib.CheckDebeziumInput(attrs, records)
	}
	hasType := records != nil && records.Kind == types.Record && len(records.Fields) > 0
	if attrs["register"] == true {
		if !hasType {
			return []stdlib.AttrError{{Attr: "register", Message: "register = true needs the type of the records written: declare the sink's schema"}}
		}
		if _, err := sinkSchema(records); err != nil {
			return []stdlib.AttrError{{Attr: "register", Message: "register = true: " + err.Error()}}
		}
	}
	prev, ok := attrs["compat_with"].(*types.Type)
	if !ok {
		return nil
	}
	if !hasType {
		return []stdlib.AttrError{{Attr: "compat_with", Message: "compat_with needs the type of the records written: declare the sink's schema"}}
	}
	old, err := avro.WireSchema(prev)
	if err != nil || old == nil {
		return []stdlib.AttrError{{Attr: "compat_with", Message: "compat_with names an Avro schema file (.avsc)"}}
	}
	next, err := sinkSchema(records)
	if err != nil {
		return []stdlib.AttrError{{Attr: "compat_with", Message: "compat_with: " + err.Error()}}
	}
	lv, _ := attrs["compatibility"].(stdlib.Ident)
	level := strings.ToUpper(string(lv))
	if level == "" {
		level = schemareg.Backward
	}
	err = schemareg.CheckAvroPair(level, next, old)
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("the sink's schema is not %s compatible with %q: %v", level, prev.Wire.File, err)
	var fe *schemareg.FieldError
	if errors.As(err, &fe) {
		var at []string
		for _, t := range []*types.Type{records, prev} {
			if docs := avro.WireDocs(t); docs != nil {
				if line := avro.FieldLine([]byte(docs[len(docs)-1]), fe.Path); line > 0 {
					at = append(at, fmt.Sprintf("%s:%d", t.Wire.File, line))
				}
			}
		}
		if len(at) > 0 {
			msg += " (" + strings.Join(at, ", ") + ")"
		}
	}
	return []stdlib.AttrError{{Attr: "compat_with", Message: msg, Code: lang.SchemaIncompatible}}
}

// sinkSchema is the Avro schema a sink registers for records of type t:
// the .avsc file's own when t was read from one, else the schema derived
// from t.
func sinkSchema(t *types.Type) (havro.Schema, error) {
	if s, err := avro.WireSchema(t); s != nil || err != nil {
		return s, err
	}
	return avro.SchemaOf(t)
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
// t once: by Avro schema resolution against t's own Avro schema when t was
// read from an .avsc file (defaults, enum defaults, promotions), else by
// field name against t. It implements codec.Codec for decoding.
type avroDecoder struct {
	decodeOnly
	reg    *schemareg.Client
	t      *types.Type
	reader havro.Schema // t's Avro schema, nil when t has none
	mu     sync.Mutex
	byID   map[int]*writerDec
}

// writerDec is how the values of one writer schema decode.
type writerDec struct {
	s   havro.Schema
	res *avro.Resolver // with a reader schema
	err error          // the writer schema does not resolve
}

func newAvroDecoder(reg *schemareg.Client, t *types.Type) (*avroDecoder, error) {
	reader, err := avro.WireSchema(t)
	if err != nil {
		return nil, err
	}
	return &avroDecoder{decodeOnly: "avro", reg: reg, t: t, reader: reader, byID: map[int]*writerDec{}}, nil
}

func (d *avroDecoder) writer(id int) (*writerDec, error) {
	d.mu.Lock()
	wd := d.byID[id]
	d.mu.Unlock()
	if wd != nil {
		return wd, wd.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	s, err := d.reg.AvroByID(ctx, id)
	if err != nil {
		return nil, err
	}
	wd = &writerDec{s: s}
	switch {
	case d.reader != nil && d.reader.Fingerprint() == s.Fingerprint():
		// The writer wrote the declared schema itself: nothing to
		// resolve, and the direct decoder gives the same values
		// (avro.TestResolverAgreesWithDecode) at a fraction of the cost.
	case d.reader != nil:
		// The compatibility check names the field that breaks.
		if err := schemareg.AvroCompatible(d.reader, s); err != nil {
			wd.err = err
		} else if wd.res, err = avro.NewResolver(d.reader, s); err != nil {
			wd.err = err
		}
	default:
		wd.err = avro.Resolvable(s, d.t)
	}
	if wd.err != nil {
		wd.err = fmt.Errorf("writer schema id %d does not resolve to the declared schema: %w", id, wd.err)
	}
	d.mu.Lock()
	d.byID[id] = wd
	d.mu.Unlock()
	return wd, wd.err
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
	if w.res != nil {
		return w.res.Decode(payload)
	}
	if derefRecord(w.s) {
		return avro.Decode(w.s, d.t, payload)
	}
	return avro.DecodeValue(w.s, payload)
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
	// schemaOf, when set, is the schema registered for t (else
	// sinkSchema's), and wrap turns each value into what it encodes
	// (debezium_avro: change records into envelopes).
	schemaOf func(*types.Type) (havro.Schema, error)
	wrap     func(any) (any, error)
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
	case e.register && e.schemaOf != nil:
		s, err = e.schemaOf(e.t)
		if err == nil {
			se.id, err = e.reg.Register(ctx, subject, s.String())
		}
	case e.register:
		if docs := avro.WireDocs(e.t); docs != nil {
			// The .avsc file's own schema, with its references.
			last := len(docs) - 1
			if se.id, err = e.reg.Register(ctx, subject, docs[last], docs[:last]...); err == nil {
				s, err = avro.WireSchema(e.t)
			}
			break
		}
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
	if e.wrap != nil {
		if v, err = e.wrap(v); err != nil {
			return nil, err
		}
	}
	start := len(dst)
	dst = schemareg.Append(dst, se.id)
	out, err := se.enc.AppendValue(dst, v)
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

// checkDebeziumAvroInput checks that a debezium_avro sink writes change
// records, whose rows have a type when it registers their schema.
func checkDebeziumAvroInput(attrs map[string]any, records *types.Type) []stdlib.AttrError {
	if err := codec.CheckDebezium(records); err != nil {
		return []stdlib.AttrError{{Attr: "format", Message: err.Error()}}
	}
	if attrs["register"] == true {
		if _, err := debeziumEnvelopeSchema(records); err != nil {
			return []stdlib.AttrError{{Attr: "register", Message: err.Error()}}
		}
	}
	if _, ok := attrs["compat_with"]; ok {
		return []stdlib.AttrError{{Attr: "compat_with", Message: "compat_with applies to format avro only"}}
	}
	return nil
}
