package protobuf

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// CodecOf returns the codec of message md.
func CodecOf(md protoreflect.MessageDescriptor) *Codec { return &Codec{md: md} }

// Message returns the descriptor of the codec's message.
func (c *Codec) Message() protoreflect.MessageDescriptor { return c.md }

// CompileFiles compiles the .proto file main of files (.proto texts by the
// path they are imported as; the well-known google/protobuf files are
// built in), as a schema registry holds a schema and its references.
func CompileFiles(files map[string]string, main string) (protoreflect.FileDescriptor, error) {
	res := &protocompile.SourceResolver{Accessor: func(p string) (io.ReadCloser, error) {
		text, ok := files[p]
		if !ok {
			return nil, fmt.Errorf("no file %q", p)
		}
		return io.NopCloser(strings.NewReader(text)), nil
	}}
	out, err := compile(res, main, "")
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// compile compiles file with res (and the well-known files); the error
// is the first problem at its file:line:col, the file name under dir.
func compile(res protocompile.Resolver, file, dir string) (linker.Files, error) {
	var first error
	rep := reporter.NewReporter(func(err reporter.ErrorWithPos) error {
		if first == nil {
			p := err.GetPosition()
			name := p.Filename
			if dir != "." && dir != "" && !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			first = fmt.Errorf("%s:%d:%d: %v", name, p.Line, p.Col, err.Unwrap())
		}
		return err
	}, nil)
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(res), Reporter: rep}
	files, err := c.Compile(context.Background(), file)
	if err != nil && first != nil {
		return nil, first
	}
	return files, err
}

// MessageAt returns the message of fd at the path idx, the message
// indexes of the Confluent wire format: [0] is the first top-level
// message, [1, 0] the first message nested in the second.
func MessageAt(fd protoreflect.FileDescriptor, idx []int) (protoreflect.MessageDescriptor, error) {
	if len(idx) == 0 {
		return nil, fmt.Errorf("no message index")
	}
	msgs := fd.Messages()
	var md protoreflect.MessageDescriptor
	for _, i := range idx {
		if i < 0 || i >= msgs.Len() {
			return nil, fmt.Errorf("message index %v is not in %s", idx, fd.Path())
		}
		md = msgs.Get(i)
		msgs = md.Messages()
	}
	return md, nil
}

// Indexes returns the message indexes of md in its file (see [MessageAt]).
func Indexes(md protoreflect.MessageDescriptor) []int {
	var idx []int
	var d protoreflect.Descriptor = md
	for {
		m, ok := d.(protoreflect.MessageDescriptor)
		if !ok {
			break
		}
		idx = append(idx, m.Index())
		d = m.Parent()
	}
	for i, j := 0, len(idx)-1; i < j; i, j = i+1, j-1 {
		idx[i], idx[j] = idx[j], idx[i]
	}
	return idx
}

// Compatible reports the first field by which a message written with
// writer does not read as reader: a field number both have whose wire
// encoding differs (varint, zig-zag, 32-bit, 64-bit, length-delimited),
// or repeated against singular for a message, map or string. Fields only
// one of them has are fine: a reader skips what it does not know, and
// reads what is missing as its default.
func Compatible(writer, reader protoreflect.MessageDescriptor) error {
	return compatible(writer, reader, "", 0)
}

func compatible(w, r protoreflect.MessageDescriptor, path string, depth int) error {
	if depth > 32 {
		return nil
	}
	rf := r.Fields()
	for i := range rf.Len() {
		f := rf.Get(i)
		wf := w.Fields().ByNumber(f.Number())
		if wf == nil {
			continue
		}
		p := path + string(f.Name())
		if wireClass(wf) != wireClass(f) {
			return fmt.Errorf("field %s (number %d) is %s in the writer's %s, %s in the reader's", p, f.Number(), kindText(wf), w.FullName(), kindText(f))
		}
		if f.IsMap() != wf.IsMap() || (f.IsList() != wf.IsList() && wireClass(f) == "length-delimited" && !packable(f.Kind())) {
			return fmt.Errorf("field %s (number %d) is %s in the writer's %s, %s in the reader's", p, f.Number(), kindText(wf), w.FullName(), kindText(f))
		}
		if f.Kind() == protoreflect.MessageKind && wf.Kind() == protoreflect.MessageKind && !f.IsMap() {
			if err := compatible(wf.Message(), f.Message(), p+".", depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func wireClass(f protoreflect.FieldDescriptor) string {
	switch f.Kind() {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Int64Kind,
		protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		return "varint"
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return "zig-zag varint"
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return "32-bit"
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return "64-bit"
	case protoreflect.GroupKind:
		return "group"
	}
	return "length-delimited"
}

func kindText(f protoreflect.FieldDescriptor) string {
	s := f.Kind().String()
	switch {
	case f.IsMap():
		s = "map"
	case f.IsList():
		s = "repeated " + s
	}
	return s
}

// FindMessage returns the message of fd (top-level or nested) named name,
// or nil.
func FindMessage(fd protoreflect.FileDescriptor, name protoreflect.FullName) protoreflect.MessageDescriptor {
	return findIn(fd.Messages(), name)
}

func findIn(msgs protoreflect.MessageDescriptors, name protoreflect.FullName) protoreflect.MessageDescriptor {
	for i := range msgs.Len() {
		md := msgs.Get(i)
		if md.FullName() == name {
			return md
		}
		if n := findIn(md.Messages(), name); n != nil {
			return n
		}
	}
	return nil
}
