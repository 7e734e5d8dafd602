package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

func classOf(udt string) sqlcommon.Class {
	switch udt {
	case "int2", "int4", "int8":
		return sqlcommon.ClassInt
	case "float4", "float8":
		return sqlcommon.ClassFloat
	case "numeric":
		return sqlcommon.ClassDecimal
	case "text", "varchar", "bpchar", "name", "citext":
		return sqlcommon.ClassText
	case "bool":
		return sqlcommon.ClassBool
	case "timestamptz", "timestamp", "date":
		return sqlcommon.ClassTime
	case "bytea":
		return sqlcommon.ClassBytes
	case "json", "jsonb":
		return sqlcommon.ClassJSON
	case "uuid":
		return sqlcommon.ClassUUID
	}
	return sqlcommon.ClassOther
}

// pgTypes are the column types create_table and evolve use.
var pgTypes = sqlcommon.TypeNames{String: "text", Int: "bigint", Float: "double precision", Bool: "boolean",
	Timestamp: "timestamptz", Bytes: "bytea", JSON: "jsonb"}

// compatible reports why values of field type t cannot be written to column
// c, or nil if they can.
func compatible(t *types.Type, c *column) error {
	return sqlcommon.Compatible(t, classOf(c.Type), c.SQLType, nil)
}

// toColumn converts v (in the lang/types representation) to the Go value pgx
// encodes into column c, checking what the server would otherwise reject
// for the whole batch.
func toColumn(c *column, v any) (any, error) {
	if v == nil {
		if !c.Nullable && !c.HasDefault {
			return nil, fmt.Errorf("column %q is NOT NULL", c.Name)
		}
		return nil, nil
	}
	bad := func() error {
		return fmt.Errorf("column %q (%s) cannot take %s", c.Name, c.SQLType, sqlcommon.Describe(v))
	}
	switch c.Class {
	case sqlcommon.ClassInt:
		var n int64
		switch x := v.(type) {
		case int64:
			if c.Type == "int8" {
				return v, nil // already what pgx encodes: no new allocation
			}
			n = x
		case int:
			n = int64(x)
		case int32:
			n = int64(x)
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<63 {
				return nil, bad()
			}
			n = int64(x)
		default:
			return nil, bad()
		}
		switch c.Type {
		case "int2":
			if n < math.MinInt16 || n > math.MaxInt16 {
				return nil, fmt.Errorf("column %q (smallint): %d out of range", c.Name, n)
			}
			return int16(n), nil
		case "int4":
			if n < math.MinInt32 || n > math.MaxInt32 {
				return nil, fmt.Errorf("column %q (integer): %d out of range", c.Name, n)
			}
			return int32(n), nil
		}
		return n, nil
	case sqlcommon.ClassFloat, sqlcommon.ClassDecimal:
		var f float64
		switch x := v.(type) {
		case float64:
			if c.Type == "float8" {
				return v, nil
			}
			f = x
		case float32:
			f = float64(x)
		case int64:
			if c.Class == sqlcommon.ClassDecimal {
				return pgtype.Numeric{Int: big.NewInt(x), Valid: true}, nil
			}
			f = float64(x)
		case int:
			f = float64(x)
		default:
			return nil, bad()
		}
		if c.Class == sqlcommon.ClassDecimal {
			// The server judges NaN and infinities: numeric takes them,
			// numeric(p, s) rejects an infinity (a record error).
			switch {
			case math.IsNaN(f):
				return pgtype.Numeric{NaN: true, Valid: true}, nil
			case math.IsInf(f, 1):
				return pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true}, nil
			case math.IsInf(f, -1):
				return pgtype.Numeric{InfinityModifier: pgtype.NegativeInfinity, Valid: true}, nil
			}
			var n pgtype.Numeric
			if err := n.Scan(strconv.FormatFloat(f, 'f', -1, 64)); err != nil {
				return nil, fmt.Errorf("column %q (numeric): %v", c.Name, err)
			}
			return n, nil
		}
		if c.Type == "float4" {
			return float32(f), nil
		}
		return f, nil
	case sqlcommon.ClassText:
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("column %q: text cannot hold a NUL character", c.Name)
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("column %q: invalid UTF-8", c.Name)
		}
		if c.MaxLen > 0 && utf8.RuneCountInString(s) > c.MaxLen {
			if c.Type != "bpchar" || len(strings.TrimRight(s, " ")) > c.MaxLen {
				return nil, fmt.Errorf("column %q (%s): value of %d characters too long", c.Name, c.SQLType, utf8.RuneCountInString(s))
			}
		}
		return v, nil
	case sqlcommon.ClassBool:
		if _, ok := v.(bool); ok {
			return v, nil
		}
		return nil, bad()
	case sqlcommon.ClassTime:
		switch x := v.(type) {
		case time.Time:
			return v, nil
		case string:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, fmt.Errorf("column %q (%s): %q is not an RFC 3339 timestamp", c.Name, c.SQLType, x)
			}
			return t, nil
		}
		return nil, bad()
	case sqlcommon.ClassBytes:
		switch x := v.(type) {
		case []byte:
			return v, nil
		case string:
			return []byte(x), nil
		}
		return nil, bad()
	case sqlcommon.ClassJSON:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("column %q (%s): %v", c.Name, c.SQLType, err)
		}
		if c.Type == "jsonb" && bytes.Contains(b, []byte(`\u0000`)) {
			return nil, fmt.Errorf("column %q (jsonb) cannot hold a NUL character", c.Name)
		}
		return json.RawMessage(b), nil
	case sqlcommon.ClassUUID:
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		var u pgtype.UUID
		if err := u.Scan(s); err != nil {
			return nil, fmt.Errorf("column %q (uuid): %q is not a UUID", c.Name, s)
		}
		return u, nil
	}
	// Other column types (enums, inet, intervals, arrays ...) take their
	// text form.
	switch x := v.(type) {
	case string:
		return x, nil
	}
	return nil, bad()
}

// typeOfColumn returns the lang type of values read from column c.
func typeOfColumn(c column) *types.Type {
	if strings.HasPrefix(c.Type, "_") {
		elem := typeOfColumn(column{Name: c.Name, Type: c.Type[1:], Nullable: true})
		return types.ListOf(elem).WithOptional(c.Nullable)
	}
	return classOf(c.Type).LangType().WithOptional(c.Nullable)
}

// fromColumn converts a value pgx decoded from column c into the lang/types
// representation. raw is the column's wire bytes, used for JSON.
func fromColumn(c *column, v any, raw []byte) (any, error) {
	if v == nil {
		return nil, nil
	}
	if classOf(c.Type) == sqlcommon.ClassJSON && raw != nil {
		return decodeJSON(raw, c.Type == "jsonb")
	}
	return normalize(v)
}

func normalize(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, int64, float64, bool, time.Time, []byte:
		return x, nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil {
			return nil, err
		}
		return f.Float64, nil
	case [16]byte:
		return pgtype.UUID{Bytes: x, Valid: true}.String(), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case fmt.Stringer:
		return x.String(), nil
	}
	return fmt.Sprint(v), nil
}

// decodeJSON decodes a json or jsonb wire value; numbers become int64 when
// integral and in range, float64 otherwise.
func decodeJSON(raw []byte, binary bool) (any, error) {
	if binary && len(raw) > 0 && raw[0] == 1 { // jsonb binary format version byte
		raw = raw[1:]
	}
	v, err := codec.DecodeJSONValue(raw)
	if err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	return v, nil
}

func (c *column) ColumnName() string { return c.Name }
func (c *column) ColumnType() string { return c.SQLType }
func (c *column) Required() bool     { return !c.Nullable && !c.HasDefault }
func (c *column) Integer() bool      { return classOf(c.Type) == sqlcommon.ClassInt }
func (c *column) Timestamp() bool {
	return c.Type == "timestamptz" || c.Type == "timestamp" || c.Type == "date"
}
func (c *column) LangType() *types.Type { return typeOfColumn(*c) }
