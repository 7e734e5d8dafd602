package avro

import (
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"time"

	havro "github.com/hamba/avro/v2"
)

// Resolver decodes values written with one writer schema as a reader
// schema reads them, by Avro schema resolution (hamba/avro's
// SchemaCompatibility.Resolve): fields the reader adds take its defaults,
// fields it lacks are skipped, int, long and float promote to long, float
// and double, string and bytes read as each other, a symbol the reader's
// enum lacks reads as its default, and a writer's union branch as the
// reader's branch that reads it. Values come out as TypeOf(reader) says.
// A Resolver is safe for concurrent use.
type Resolver struct {
	resolved, reader havro.Schema
}

// NewResolver returns the resolver of writer's values to reader; it
// fails when reader cannot read what writer writes.
func NewResolver(reader, writer havro.Schema) (*Resolver, error) {
	s, err := havro.NewSchemaCompatibility().Resolve(reader, writer)
	if err != nil {
		return nil, err
	}
	return &Resolver{resolved: s, reader: reader}, nil
}

// Decode decodes one value, a record.
func (r *Resolver) Decode(b []byte) (map[string]any, error) {
	var m map[string]any
	if err := havro.Unmarshal(r.resolved, b, &m); err != nil {
		return nil, err
	}
	v, err := pipeValue(r.reader, m)
	if err != nil {
		return nil, err
	}
	out, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the value is not a record")
	}
	return out, nil
}

// pipeValue turns a value hamba/avro decoded with schema s into the pipe
// value TypeOf(s) describes.
func pipeValue(s havro.Schema, v any) (any, error) {
	s = derefSchema(s)
	if v == nil {
		return nil, nil
	}
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		switch l := lt.Logical().(type) {
		case *havro.DecimalLogicalSchema:
			if r, ok := v.(*big.Rat); ok {
				return r.FloatString(l.Scale()), nil
			}
		}
		switch x := v.(type) {
		case time.Time:
			return x.UTC(), nil
		case time.Duration:
			if lt.Logical().Type() == havro.TimeMillis {
				return x.Milliseconds(), nil
			}
			return x.Microseconds(), nil
		}
	}
	switch s := s.(type) {
	case *havro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("record %s decoded as %T", s.FullName(), v)
		}
		for _, f := range s.Fields() {
			x, err := pipeValue(f.Type(), m[f.Name()])
			if err != nil {
				return nil, inField(f.Name(), err)
			}
			m[f.Name()] = x
		}
		return m, nil
	case *havro.UnionSchema:
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			// A nullable union decodes as its branch's value.
			for _, b := range s.Types() {
				if b.Type() != havro.Null {
					return pipeValue(b, v)
				}
			}
			return v, nil
		}
		for name, x := range m {
			for _, b := range s.Types() {
				if branchName(b) == name {
					return pipeValue(b, x)
				}
			}
		}
		return v, nil
	case *havro.ArraySchema:
		a, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("array decoded as %T", v)
		}
		for i, x := range a {
			y, err := pipeValue(s.Items(), x)
			if err != nil {
				return nil, inField("[]", err)
			}
			a[i] = y
		}
		return a, nil
	case *havro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("map decoded as %T", v)
		}
		for k, x := range m {
			y, err := pipeValue(s.Values(), x)
			if err != nil {
				return nil, inField(k, err)
			}
			m[k] = y
		}
		return m, nil
	case *havro.FixedSchema:
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Array {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return b, nil
		}
	}
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	}
	return v, nil
}

// branchName is the name hamba/avro gives a union branch's value.
func branchName(s havro.Schema) string {
	s = derefSchema(s)
	if n, ok := s.(havro.NamedSchema); ok {
		return n.FullName()
	}
	if lt, ok := s.(havro.LogicalTypeSchema); ok && lt.Logical() != nil {
		return string(s.Type()) + "." + string(lt.Logical().Type())
	}
	return string(s.Type())
}
