package protobuf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"pipe.dev/pipe/lang/types"
)

// Compile compiles the .proto file at path (its imports are resolved
// relative to its directory; the well-known google/protobuf files are
// built in) and returns the pipe type of message, a full name such as
// "shop.Order". read reads a file (nil: os.ReadFile). A problem in a .proto
// file is an error naming its file:line:col, relative to path's directory
// as given.
func Compile(path, message string, read func(string) ([]byte, error)) (*types.Type, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	if read == nil {
		read = os.ReadFile
	}
	texts := map[string]string{}
	res := &protocompile.SourceResolver{ImportPaths: []string{dir}}
	res.Accessor = func(p string) (io.ReadCloser, error) {
		b, err := read(p)
		if err != nil {
			return nil, err
		}
		if rel, err := filepath.Rel(dir, p); err == nil {
			texts[filepath.ToSlash(rel)] = string(b)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	files, err := compile(res, base, dir)
	if err != nil {
		return nil, err
	}
	fd := files[0]
	d := fd.FindDescriptorByName(protoreflect.FullName(message))
	if d == nil && !strings.Contains(message, ".") && fd.Package() != "" {
		d = fd.FindDescriptorByName(fd.Package().Append(protoreflect.Name(message)))
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		var names []string
		msgs := fd.Messages()
		for i := range msgs.Len() {
			names = append(names, string(msgs.Get(i).FullName()))
		}
		return nil, fmt.Errorf("%s defines no message %q (it defines %s)", base, message, strings.Join(names, ", "))
	}
	t, err := TypeOf(md)
	if err != nil {
		return nil, err
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imps := f.Imports()
		for i := range imps.Len() {
			add(imps.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(fd)
	doc, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		return nil, err
	}
	kept := map[string]string{}
	for _, f := range set.File {
		if text, ok := texts[f.GetName()]; ok {
			kept[f.GetName()] = text
		}
	}
	t.Wire = &types.Wire{Format: "protobuf", Name: string(md.FullName()), Doc: doc, Files: kept, Main: fd.Path()}
	return t, nil
}

// Descriptor returns the message descriptor a type read by Compile keeps.
func Descriptor(t *types.Type) (protoreflect.MessageDescriptor, error) {
	if t == nil || t.Wire == nil || t.Wire.Format != "protobuf" {
		return nil, errors.New(`protobuf needs a schema read from a .proto file: schema X from "x.proto#pkg.Message"`)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(t.Wire.Doc, &set); err != nil {
		return nil, fmt.Errorf("protobuf descriptor: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("protobuf descriptor: %w", err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(t.Wire.Name))
	if err != nil {
		return nil, fmt.Errorf("protobuf descriptor: %w", err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("protobuf descriptor: %s is not a message", t.Wire.Name)
	}
	return md, nil
}

// wellKnown returns the pipe type of a well-known message, or nil.
func wellKnown(md protoreflect.MessageDescriptor) *types.Type {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return types.TimestampType
	case "google.protobuf.Duration":
		return types.IntType
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
		return types.FloatType
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value":
		return types.IntType
	case "google.protobuf.BoolValue":
		return types.BoolType
	case "google.protobuf.StringValue":
		return types.StringType
	case "google.protobuf.BytesValue":
		return types.BytesType
	case "google.protobuf.Struct":
		return types.MapOf(types.AnyType.WithOptional(true))
	case "google.protobuf.Value":
		return types.AnyType
	case "google.protobuf.ListValue":
		return types.ListOf(types.AnyType.WithOptional(true))
	}
	return nil
}

// TypeOf maps a message to the pipe type its values decode to:
//
//	message                     → record (fields in declaration order)
//	string, bytes, bool         → string, bytes, bool
//	all integer kinds           → int (a uint64 above 2^63-1 is a decode error)
//	float, double               → float
//	enum                        → string (the value's name)
//	repeated T                  → list<T>
//	map<K, V>                   → map<string, V> (integer and bool keys as text)
//	a field with presence       → T? (message fields, oneof members,
//	                              proto3 optional, proto2 optional)
//	google.protobuf.Timestamp   → timestamp
//	google.protobuf.Duration    → int (nanoseconds)
//	wrappers (Int64Value, ...)  → the wrapped type, optional
//	Struct, Value, ListValue    → map<string, any?>, any, list<any?>
//
// A message that contains itself is an error: pipe records are finite.
func TypeOf(md protoreflect.MessageDescriptor) (*types.Type, error) {
	return messageType(md, nil)
}

func messageType(md protoreflect.MessageDescriptor, open []protoreflect.FullName) (*types.Type, error) {
	for _, n := range open {
		if n == md.FullName() {
			return nil, fmt.Errorf("message %s contains itself: pipe records are finite", n)
		}
	}
	open = append(open, md.FullName())
	t := &types.Type{Kind: types.Record}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		ft, err := fieldType(fd, open)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", fd.Name(), err)
		}
		t.Fields = append(t.Fields, &types.Field{Name: string(fd.Name()), Type: ft})
	}
	return t, nil
}

func fieldType(fd protoreflect.FieldDescriptor, open []protoreflect.FullName) (*types.Type, error) {
	if fd.IsMap() {
		vt, err := singularType(fd.MapValue(), open)
		if err != nil {
			return nil, err
		}
		return types.MapOf(vt), nil
	}
	t, err := singularType(fd, open)
	if err != nil {
		return nil, err
	}
	if fd.IsList() {
		return types.ListOf(t), nil
	}
	if fd.HasPresence() {
		t = t.WithOptional(true)
	}
	return t, nil
}

// singularType is the type of one value of fd (an element of a repeated
// field, the value of a map).
func singularType(fd protoreflect.FieldDescriptor, open []protoreflect.FullName) (*types.Type, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return types.StringType, nil
	case protoreflect.BytesKind:
		return types.BytesType, nil
	case protoreflect.BoolKind:
		return types.BoolType, nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return types.FloatType, nil
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return types.AnyType.WithOptional(true), nil
		}
		return types.StringType, nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if t := wellKnown(fd.Message()); t != nil {
			return t, nil
		}
		return messageType(fd.Message(), open)
	default: // the integer kinds
		return types.IntType, nil
	}
}
