package mysql

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/internal/sqlcommon"
)

// column is one column of a table as information_schema describes it.
type column struct {
	Name       string
	DataType   string // DATA_TYPE: bigint, varchar, datetime, ...
	SQLType    string // COLUMN_TYPE: bigint(20) unsigned, varchar(20), ...
	Nullable   bool
	HasDefault bool // a default, auto_increment or a generated value
	MaxChars   int  // CHARACTER_MAXIMUM_LENGTH, 0 if none
	MaxBytes   int  // CHARACTER_OCTET_LENGTH, 0 if none
	Unsigned   bool
	Class      sqlcommon.Class
}

func (c *column) ColumnName() string    { return c.Name }
func (c *column) ColumnType() string    { return c.SQLType }
func (c *column) Required() bool        { return !c.Nullable && !c.HasDefault }
func (c *column) Integer() bool         { return c.Class == sqlcommon.ClassInt }
func (c *column) Timestamp() bool       { return c.Class == sqlcommon.ClassTime }
func (c *column) LangType() *types.Type { return typeOfColumn(c) }

func classOf(dataType, columnType string, json bool) sqlcommon.Class {
	if json {
		return sqlcommon.ClassJSON
	}
	switch dataType {
	case "tinyint":
		if strings.HasPrefix(columnType, "tinyint(1)") {
			return sqlcommon.ClassBool
		}
		return sqlcommon.ClassInt
	case "smallint", "mediumint", "int", "integer", "bigint", "year":
		return sqlcommon.ClassInt
	case "float", "double", "real":
		return sqlcommon.ClassFloat
	case "decimal", "numeric":
		return sqlcommon.ClassDecimal
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		return sqlcommon.ClassText
	case "bool", "boolean":
		return sqlcommon.ClassBool
	case "datetime", "timestamp", "date":
		return sqlcommon.ClassTime
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return sqlcommon.ClassBytes
	case "json":
		return sqlcommon.ClassJSON
	}
	return sqlcommon.ClassOther // enum, set, bit, time, geometry, uuid, inet6 ...
}

// myTypes are the column types create_table and evolve use.
var myTypes = sqlcommon.TypeNames{String: "longtext", Int: "bigint", Float: "double", Bool: "boolean",
	Timestamp: "datetime(6)", Bytes: "longblob", JSON: "json"}

// keyType is the type of a key column create_table makes: a text or bytes
// key needs a length.
func keyType(t *types.Type) string {
	switch t.Kind {
	case types.String:
		return "varchar(255)"
	case types.Bytes:
		return "varbinary(255)"
	}
	return myTypes.Of(t)
}

// readColumns returns the columns of t in order; none if t does not exist.
func readColumns(ctx context.Context, q queryer, t tableName) ([]column, error) {
	rows, err := q.QueryContext(ctx, `
SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE = 'YES',
       c.COLUMN_DEFAULT IS NOT NULL OR c.EXTRA LIKE '%auto_increment%' OR c.EXTRA LIKE '%GENERATED%' OR c.EXTRA LIKE '%DEFAULT%',
       COALESCE(c.CHARACTER_MAXIMUM_LENGTH, 0), COALESCE(c.CHARACTER_OCTET_LENGTH, 0),
       EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k
               WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME
                 AND k.CHECK_CLAUSE = CONCAT('json_valid(', CHAR(96), c.COLUMN_NAME, CHAR(96), ')'))
FROM information_schema.COLUMNS c
WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ?
ORDER BY c.ORDINAL_POSITION`, t.DB, t.Name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", t.String(), err)
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var c column
		var maxChars, maxBytes int64
		var isJSON bool
		if err := rows.Scan(&c.Name, &c.DataType, &c.SQLType, &c.Nullable, &c.HasDefault, &maxChars, &maxBytes, &isJSON); err != nil {
			return nil, fmt.Errorf("read columns of %q: %w", t.String(), err)
		}
		c.DataType = strings.ToLower(c.DataType)
		c.MaxChars, c.MaxBytes = int(min(maxChars, math.MaxInt32)), int(min(maxBytes, math.MaxInt32))
		c.Unsigned = strings.Contains(c.SQLType, "unsigned")
		c.Class = classOf(c.DataType, c.SQLType, isJSON)
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", t.String(), err)
	}
	return cols, nil
}

// indexes returns the column lists of t's unique indexes, each sorted and
// comma-joined, and its primary key in key order.
func indexes(ctx context.Context, q queryer, t tableName) (uniques []string, pk []string, err error) {
	rows, err := q.QueryContext(ctx, `
SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY COLUMN_NAME SEPARATOR ','),
       GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR ','), MAX(SUB_PART IS NOT NULL)
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0
GROUP BY INDEX_NAME ORDER BY INDEX_NAME`, t.DB, t.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("read indexes of %q: %w", t.String(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, sorted, ordered string
		var prefix bool
		if err := rows.Scan(&name, &sorted, &ordered, &prefix); err != nil {
			return nil, nil, fmt.Errorf("read indexes of %q: %w", t.String(), err)
		}
		if prefix {
			sorted += ",(prefix)" // unique on a prefix only: never the key
		}
		uniques = append(uniques, sorted)
		if name == "PRIMARY" {
			pk = strings.Split(ordered, ",")
		}
	}
	return uniques, pk, rows.Err()
}

// compatible reports why values of field type t cannot be written to
// column c, or nil if they can.
func compatible(t *types.Type, c *column) error {
	return sqlcommon.Compatible(t, c.Class, c.SQLType, alsoWritable)
}

// alsoWritable names the classes of MySQL columns that take values of a
// kind beyond those of every server: a decimal from a string, a boolean
// (tinyint(1)) from an int and back, JSON text in a text column.
var alsoWritable = map[types.Kind][]sqlcommon.Class{
	types.String: {sqlcommon.ClassDecimal},
	types.Int:    {sqlcommon.ClassBool},
	types.Bool:   {sqlcommon.ClassInt},
	types.List:   {sqlcommon.ClassText},
	types.Map:    {sqlcommon.ClassText},
	types.Record: {sqlcommon.ClassText},
}

// intRange is the range of an integer column.
func intRange(c *column) (lo, hi int64) {
	bits := map[string]uint{"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32}[c.DataType]
	if bits == 0 {
		if c.Unsigned {
			return 0, math.MaxInt64 // bigint unsigned: int64 values only
		}
		return math.MinInt64, math.MaxInt64
	}
	if c.Unsigned {
		return 0, 1<<bits - 1
	}
	return -(1 << (bits - 1)), 1<<(bits-1) - 1
}

// toColumn converts v (in the lang/types representation) to the Go value
// the driver sends for column c, checking what the server would otherwise
// reject: NOT NULL, range, length, UTF-8.
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
	case sqlcommon.ClassInt, sqlcommon.ClassBool:
		var n int64
		switch x := v.(type) {
		case int64:
			n = x
		case int:
			n = int64(x)
		case int32:
			n = int64(x)
		case bool:
			if x {
				n = 1
			}
		case float64:
			if x != math.Trunc(x) || math.Abs(x) >= 1<<63 {
				return nil, bad()
			}
			n = int64(x)
		default:
			return nil, bad()
		}
		if lo, hi := intRange(c); n < lo || n > hi {
			return nil, fmt.Errorf("column %q (%s): %d out of range", c.Name, c.SQLType, n)
		}
		return n, nil
	case sqlcommon.ClassFloat, sqlcommon.ClassDecimal:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		case int64:
			if c.Class == sqlcommon.ClassDecimal {
				return strconv.FormatInt(x, 10), nil
			}
			f = float64(x)
		case int:
			f = float64(x)
		case string:
			if c.Class == sqlcommon.ClassDecimal {
				if _, err := strconv.ParseFloat(x, 64); err != nil {
					return nil, fmt.Errorf("column %q (%s): %q is not a number", c.Name, c.SQLType, x)
				}
				return x, nil
			}
			return nil, bad()
		default:
			return nil, bad()
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("column %q (%s) cannot hold %v", c.Name, c.SQLType, f)
		}
		if c.DataType == "float" && math.Abs(f) > math.MaxFloat32 {
			return nil, fmt.Errorf("column %q (%s): %v out of range", c.Name, c.SQLType, f)
		}
		if c.Class == sqlcommon.ClassDecimal {
			return strconv.FormatFloat(f, 'f', -1, 64), nil
		}
		return f, nil
	case sqlcommon.ClassText:
		s, ok := v.(string)
		if !ok {
			switch v.(type) {
			case []any, map[string]any:
				b, err := json.Marshal(v)
				if err != nil {
					return nil, fmt.Errorf("column %q (%s): %v", c.Name, c.SQLType, err)
				}
				s = string(b)
			default:
				return nil, bad()
			}
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("column %q: invalid UTF-8", c.Name)
		}
		return s, checkLen(c, s)
	case sqlcommon.ClassTime:
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x.UTC()
		case string:
			var err error
			if t, err = time.Parse(time.RFC3339Nano, x); err != nil {
				return nil, fmt.Errorf("column %q (%s): %q is not an RFC 3339 timestamp", c.Name, c.SQLType, x)
			}
			t = t.UTC()
		default:
			return nil, bad()
		}
		lo, hi := 1000, 9999
		if c.DataType == "timestamp" {
			lo, hi = 1970, 2038
		}
		if y := t.Year(); y < lo || y > hi {
			return nil, fmt.Errorf("column %q (%s): %s out of range", c.Name, c.SQLType, t.Format(time.RFC3339))
		}
		return t, nil
	case sqlcommon.ClassBytes:
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		default:
			return nil, bad()
		}
		if c.MaxBytes > 0 && len(b) > c.MaxBytes {
			return nil, fmt.Errorf("column %q (%s): value of %d bytes too long", c.Name, c.SQLType, len(b))
		}
		return b, nil
	case sqlcommon.ClassJSON:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("column %q (%s): %v", c.Name, c.SQLType, err)
		}
		return string(b), checkLen(c, string(b))
	}
	// Other column types (enum, set, bit, time, uuid, inet ...) take their
	// text form; the server judges it.
	if s, ok := v.(string); ok {
		return s, nil
	}
	return nil, bad()
}

// checkLen reports a text too long for c.
func checkLen(c *column, s string) error {
	if c.MaxBytes > 0 && len(s) > c.MaxBytes || c.MaxChars > 0 && len(s) > c.MaxChars && utf8.RuneCountInString(s) > c.MaxChars {
		return fmt.Errorf("column %q (%s): value of %d characters too long", c.Name, c.SQLType, utf8.RuneCountInString(s))
	}
	return nil
}

// typeOfColumn returns the lang type of values read from column c.
func typeOfColumn(c *column) *types.Type { return c.Class.LangType().WithOptional(c.Nullable) }

// fromColumn converts a value the driver read from column c into the
// lang/types representation.
func fromColumn(c *column, v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		switch c.Class {
		case sqlcommon.ClassInt:
			if c.Unsigned {
				n, err := strconv.ParseUint(string(x), 10, 64)
				if err != nil || n > math.MaxInt64 {
					return nil, fmt.Errorf("%s does not fit an int", x)
				}
				return int64(n), nil
			}
			return strconv.ParseInt(string(x), 10, 64)
		case sqlcommon.ClassBool:
			n, err := strconv.ParseInt(string(x), 10, 64)
			return n != 0, err
		case sqlcommon.ClassFloat, sqlcommon.ClassDecimal:
			return strconv.ParseFloat(string(x), 64)
		case sqlcommon.ClassBytes:
			return append([]byte(nil), x...), nil
		case sqlcommon.ClassJSON:
			out, err := codec.DecodeJSONValue(x)
			if err != nil {
				return nil, fmt.Errorf("decode json: %w", err)
			}
			return out, nil
		}
		return string(x), nil
	case int64:
		if c.Class == sqlcommon.ClassBool {
			return x != 0, nil
		}
		if c.Class == sqlcommon.ClassFloat || c.Class == sqlcommon.ClassDecimal {
			return float64(x), nil
		}
		return x, nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("%d does not fit an int", x)
		}
		return int64(x), nil
	case int32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case time.Time:
		return x.UTC(), nil
	}
	return v, nil
}
