package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/protobuf"
	"pipe.dev/pipe/stdlib/schemareg"
)

// mainProto is the name the schema a registry id holds is compiled under
// (its references go by their own names).
const mainProto = "pipe.registry.schema.proto"

// protoDecoder decodes Protobuf messages in the wire format (magic byte,
// schema id, message indexes, payload). With a declared message it
// decodes by it, once it has checked that the writer's message has its
// full name and reads as it (field numbers by wire encoding); without one
// (keys), by the writer's message.
type protoDecoder struct {
	decodeOnly
	reg   *schemareg.Client
	c     *protobuf.Codec // declared, nil for keys
	files idCache[*protoWriter]
}

// protoWriter is a writer schema compiled, with whether each of its
// messages reads as the declared one.
type protoWriter struct {
	fd protoreflect.FileDescriptor
	mu sync.Mutex
	ok map[protoreflect.FullName]error
}

func newProtoDecoder(reg *schemareg.Client, c *protobuf.Codec) *protoDecoder {
	return &protoDecoder{decodeOnly: "protobuf", reg: reg, c: c}
}

func (d *protoDecoder) writer(id int) (*protoWriter, error) {
	return d.files.get(id, func(ctx context.Context) (*protoWriter, error) {
		s, files, err := writerSchema(ctx, d.reg, id, sr.TypeProtobuf)
		if err != nil {
			return nil, err
		}
		files[mainProto] = s.Schema
		fd, err := protobuf.CompileFiles(files, mainProto)
		if err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
		return &protoWriter{fd: fd, ok: map[protoreflect.FullName]error{}}, nil
	})
}

// parseIndexes reads the message indexes after the schema id. A first
// byte of 8 or more is a Protobuf field tag (as a count it would say 4
// indexes or more): the payload then has no indexes and is the first
// message's, as @kafkajs/confluent-schema-registry writes it.
func parseIndexes(b []byte) ([]int, []byte, error) {
	if len(b) == 0 || b[0] >= 8 {
		return []int{0}, b, nil
	}
	return schemareg.ParseIndexes(b)
}

func (d *protoDecoder) value(data []byte) (any, error) {
	id, payload, err := schemareg.Parse(data)
	if err != nil {
		return nil, err
	}
	idx, payload, err := parseIndexes(payload)
	if err != nil {
		return nil, err
	}
	w, err := d.writer(id)
	if err != nil {
		return nil, err
	}
	md, err := protobuf.MessageAt(w.fd, idx)
	if err != nil {
		return nil, fmt.Errorf("schema id %d: %w", id, err)
	}
	if d.c == nil {
		return protobuf.CodecOf(md).Decode(payload)
	}
	w.mu.Lock()
	cerr, seen := w.ok[md.FullName()]
	if !seen {
		if want := d.c.Message().FullName(); md.FullName() != want {
			// A topic may carry several message types (record subject
			// strategies): only the declared one reads as the schema.
			cerr = fmt.Errorf("writer schema id %d writes message %s, not the declared %s", id, md.FullName(), want)
		} else if cerr = protobuf.Compatible(md, d.c.Message()); cerr != nil {
			cerr = fmt.Errorf("writer schema id %d does not read as the declared message %s: %w", id, d.c.Message().FullName(), cerr)
		}
		w.ok[md.FullName()] = cerr
	}
	w.mu.Unlock()
	if cerr != nil {
		return nil, cerr
	}
	return d.c.Decode(payload)
}

// Decode implements codec.Codec.
func (d *protoDecoder) Decode(data []byte) (map[string]any, error) {
	return decodedRecord(d.value(data))
}

// protobuf sets e up for format protobuf: the sink's message (the value's)
// or the subject's first message (a key's).
func (e *subjectEncoder) protobuf(cfg stdlib.Config, isKey bool) error {
	var decl *protobuf.Codec
	if !isKey {
		t := cfg.RecordType()
		c, err := protobuf.NewCodec(t)
		if err != nil {
			return err
		}
		decl, e.record = c, t.Wire.Name
		e.schema = func(ctx context.Context) (sr.Schema, error) {
			return registerProto(ctx, e.reg, t.Wire.Files, t.Wire.Doc, t.Wire.Main)
		}
	}
	e.build = func(ctx context.Context, id int, s sr.Schema) (*wireSchema, error) {
		if s.Type != sr.TypeProtobuf {
			return nil, fmt.Errorf("schema id %d is %s, not PROTOBUF", id, s.Type)
		}
		files, err := e.reg.References(ctx, s.References)
		if err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
		files[mainProto] = s.Schema
		fd, err := protobuf.CompileFiles(files, mainProto)
		if err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
		var md protoreflect.MessageDescriptor
		if decl == nil {
			md, err = protobuf.MessageAt(fd, []int{0})
		} else if md = protobuf.FindMessage(fd, decl.Message().FullName()); md == nil {
			err = fmt.Errorf("schema id %d has no message %s", id, decl.Message().FullName())
		} else if err = protobuf.Compatible(decl.Message(), md); err != nil {
			err = fmt.Errorf("schema id %d does not read what the sink writes: %w", id, err)
		}
		if err != nil {
			return nil, err
		}
		c := decl
		if c == nil {
			c = protobuf.CodecOf(md)
		}
		ws := &wireSchema{prefix: schemareg.AppendIndexes(schemareg.Append(nil, id), protobuf.Indexes(md))}
		ws.enc = func(dst []byte, v any) ([]byte, error) {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("a Protobuf message is a record, not %T", v)
			}
			return c.Append(dst, m)
		}
		return ws, nil
	}
	return nil
}

// registerProto returns the schema of the .proto file main to register,
// after registering the files it imports (but the well-known ones), each
// under a subject named by its import path: the references.
func registerProto(ctx context.Context, reg *schemareg.Client, files map[string]string, doc []byte, main string) (sr.Schema, error) {
	text, ok := files[main]
	if !ok {
		return sr.Schema{}, fmt.Errorf("register = true needs the text of %s: compile the pipeline again", main)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(doc, &set); err != nil {
		return sr.Schema{}, fmt.Errorf("protobuf descriptor: %w", err)
	}
	deps := map[string][]string{}
	for _, f := range set.File {
		deps[f.GetName()] = f.GetDependency()
	}
	versions := map[string]int{}
	var refsOf func(name string, depth int) ([]sr.SchemaReference, error)
	refsOf = func(name string, depth int) ([]sr.SchemaReference, error) {
		if depth > 32 {
			return nil, errors.New("imports nest too deeply")
		}
		var refs []sr.SchemaReference
		for _, dep := range deps[name] {
			text, ok := files[dep]
			if !ok {
				continue // a well-known file: the registry has it built in
			}
			v, done := versions[dep]
			if !done {
				sub, err := refsOf(dep, depth+1)
				if err != nil {
					return nil, err
				}
				if _, v, err = reg.Create(ctx, dep, sr.Schema{Schema: text, Type: sr.TypeProtobuf, References: sub}); err != nil {
					return nil, err
				}
				versions[dep] = v
			}
			refs = append(refs, sr.SchemaReference{Name: dep, Subject: dep, Version: v})
		}
		return refs, nil
	}
	refs, err := refsOf(main, 0)
	if err != nil {
		return sr.Schema{}, err
	}
	return sr.Schema{Schema: text, Type: sr.TypeProtobuf, References: refs}, nil
}
