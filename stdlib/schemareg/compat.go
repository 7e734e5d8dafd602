package schemareg

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	havro "github.com/hamba/avro/v2"
)

// Compatibility levels of a subject, as the registry names them.
const (
	None               = "NONE"
	Backward           = "BACKWARD"
	BackwardTransitive = "BACKWARD_TRANSITIVE"
	Forward            = "FORWARD"
	ForwardTransitive  = "FORWARD_TRANSITIVE"
	Full               = "FULL"
	FullTransitive     = "FULL_TRANSITIVE"
)

// Levels lists the compatibility levels.
var Levels = []string{None, Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive}

// CheckAvro checks that schema next may follow the versions prev (oldest
// first) of a subject under compatibility level. BACKWARD: next reads what
// the latest version wrote; FORWARD: the latest reads what next writes;
// FULL: both; the _TRANSITIVE levels check every version, not only the
// latest. The error names the version and the field that breaks.
func CheckAvro(level string, next havro.Schema, prev []Version) error {
	if len(prev) == 0 || level == None {
		return nil
	}
	if !slices.Contains(Levels, level) {
		return fmt.Errorf("unknown compatibility level %q", level)
	}
	against := prev[len(prev)-1:]
	if strings.HasSuffix(level, "_TRANSITIVE") {
		against = prev
	}
	for i := len(against) - 1; i >= 0; i-- {
		v := against[i]
		if err := CheckAvroPair(level, next, v.Schema); err != nil {
			var ce *CompatError
			if errors.As(err, &ce) {
				if ce.NewReads {
					return fmt.Errorf("incompatible with version %d under %s (the new schema must read what version %d wrote): %w", v.Version, level, v.Version, ce.Err)
				}
				return fmt.Errorf("incompatible with version %d under %s (version %d must read what the new schema writes): %w", v.Version, level, v.Version, ce.Err)
			}
			return err
		}
	}
	return nil
}

// CheckAvroPair checks that schema next may follow schema prev under
// compatibility level (its _TRANSITIVE form is the same with one
// schema). A break is a *CompatError.
func CheckAvroPair(level string, next, prev havro.Schema) error {
	base := strings.TrimSuffix(level, "_TRANSITIVE")
	if !slices.Contains(Levels, level) {
		return fmt.Errorf("unknown compatibility level %q", level)
	}
	if base == Backward || base == Full {
		if err := AvroCompatible(next, prev); err != nil {
			return &CompatError{NewReads: true, Err: err}
		}
	}
	if base == Forward || base == Full {
		if err := AvroCompatible(prev, next); err != nil {
			return &CompatError{Err: err}
		}
	}
	return nil
}

// CompatError is a compatibility break between a new schema and an
// earlier one.
type CompatError struct {
	// NewReads: the new schema cannot read what the earlier one wrote
	// (else the earlier cannot read what the new one writes).
	NewReads bool
	Err      error // a *FieldError when a field breaks
}

func (e *CompatError) Error() string {
	if e.NewReads {
		return "the new schema cannot read what the earlier wrote: " + e.Err.Error()
	}
	return "the earlier schema cannot read what the new one writes: " + e.Err.Error()
}

func (e *CompatError) Unwrap() error { return e.Err }

// FieldError is a break at a field: Path is its dotted path from the
// top-level record ("sub.x"; "[]" for array items, "{}" for map values).
type FieldError struct {
	Path    string
	Message string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %s: %s", e.Path, e.Message) }

// Version is one version of a subject's schema.
type Version struct {
	Version int
	Schema  havro.Schema
}

// AvroCompatible reports whether data written with writer can be read
// with reader under Avro schema resolution; the error names the field.
func AvroCompatible(reader, writer havro.Schema) error {
	return compatible(reader, writer, "")
}

func deref(s havro.Schema) havro.Schema {
	if r, ok := s.(*havro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func fieldErr(path string, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		return errors.New(msg)
	}
	return &FieldError{Path: path, Message: msg}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func compatible(reader, writer havro.Schema, path string) error {
	reader, writer = deref(reader), deref(writer)
	ru, rIsUnion := reader.(*havro.UnionSchema)
	wu, wIsUnion := writer.(*havro.UnionSchema)
	switch {
	case wIsUnion:
		// Every branch the writer may have written must be readable.
		for _, b := range wu.Types() {
			if err := compatible(reader, b, path); err != nil {
				return err
			}
		}
		return nil
	case rIsUnion:
		var first error
		for _, b := range ru.Types() {
			err := compatible(b, writer, path)
			if err == nil {
				return nil
			}
			if first == nil && sameKind(b, writer) {
				first = err
			}
		}
		if first != nil {
			return first
		}
		return fieldErr(path, "the reader's union has no branch for the writer's %s", writer.Type())
	}
	rr, rok := reader.(*havro.RecordSchema)
	wr, wok := writer.(*havro.RecordSchema)
	if rok && wok {
		if rr.FullName() != wr.FullName() && !slices.Contains(rr.Aliases(), wr.FullName()) {
			return fieldErr(path, "record %s cannot read record %s (names differ)", rr.FullName(), wr.FullName())
		}
		for _, f := range rr.Fields() {
			wf := writerField(wr, f)
			p := join(path, f.Name())
			if wf == nil {
				if f.HasDefault() {
					continue
				}
				return fieldErr(p, "the reader's schema has it without a default and the writer's lacks it")
			}
			if err := compatible(f.Type(), wf.Type(), p); err != nil {
				return err
			}
		}
		return nil
	}
	if ra, ok := reader.(*havro.ArraySchema); ok {
		if wa, ok := writer.(*havro.ArraySchema); ok {
			return compatible(ra.Items(), wa.Items(), path+"[]")
		}
	}
	if rm, ok := reader.(*havro.MapSchema); ok {
		if wm, ok := writer.(*havro.MapSchema); ok {
			return compatible(rm.Values(), wm.Values(), path+"{}")
		}
	}
	if err := havro.NewSchemaCompatibility().Compatible(reader, writer); err != nil {
		if reader.Type() != writer.Type() {
			return fieldErr(path, "the reader's %s cannot read the writer's %s", reader.Type(), writer.Type())
		}
		return fieldErr(path, "%v", err)
	}
	return nil
}

func sameKind(a, b havro.Schema) bool { return deref(a).Type() == deref(b).Type() }

// writerField finds the writer's field read as reader field f: by name,
// then by f's aliases.
func writerField(w *havro.RecordSchema, f *havro.Field) *havro.Field {
	for _, wf := range w.Fields() {
		if wf.Name() == f.Name() {
			return wf
		}
	}
	for _, wf := range w.Fields() {
		if slices.Contains(f.Aliases(), wf.Name()) {
			return wf
		}
	}
	return nil
}
