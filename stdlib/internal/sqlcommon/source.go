package sqlcommon

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// SourceParams returns the attributes of a SQL source: the connection's,
// then the ones every SQL source takes.
func SourceParams(conn ...stdlib.Param) []stdlib.Param {
	return append(slices.Clone(conn),
		stdlib.Param{Name: "table", Type: stdlib.String, Doc: "table to read, optionally schema-qualified"},
		stdlib.Param{Name: "query", Type: stdlib.String, Doc: "SELECT to read instead of a table; the mode's columns must be in its output"},
		stdlib.Param{Name: "mode", Type: stdlib.Enum("incrementing", "timestamp", "timestamp_incrementing", "bulk"),
			Default: stdlib.Ident("incrementing"),
			Doc:     "incrementing: new rows by a growing id; timestamp: new or updated rows by a timestamp; both; bulk: one ordered read"},
		stdlib.Param{Name: "incrementing_column", Type: stdlib.String, Doc: "a strictly growing integer column (incrementing modes)"},
		stdlib.Param{Name: "timestamp_column", Type: stdlib.String, Doc: "a timestamp column set on insert and update (timestamp modes)"},
		stdlib.Param{Name: "poll", Type: stdlib.Duration, Default: time.Second, Doc: "how often to look for new rows once caught up"},
		stdlib.Param{Name: "batch", Type: stdlib.Int, Default: int64(10000), Doc: "rows per query"},
		stdlib.Param{Name: "delay", Type: stdlib.Duration, Default: time.Duration(0),
			Doc: "timestamp modes: only read rows older than this, so that transactions still open are not overtaken"},
		retry.Param,
		stdlib.Param{Name: "schema", Type: stdlib.Schema, Doc: "the record type, checked against the columns at start"},
	)
}

// CheckSource checks the attributes of [SourceParams]; parseTable checks
// a table name of the dialect.
func CheckSource(attrs map[string]any, parseTable func(string) error) []stdlib.AttrError {
	var errs []stdlib.AttrError
	_, hasTable := attrs["table"]
	_, hasQuery := attrs["query"]
	switch {
	case hasTable && hasQuery:
		errs = append(errs, stdlib.AttrError{Attr: "query", Message: "set table or query, not both"})
	case !hasTable && !hasQuery:
		errs = append(errs, stdlib.AttrError{Attr: "table", Message: "set table or query"})
	}
	if s, ok := attrs["table"].(string); ok {
		if err := parseTable(s); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "table", Message: err.Error()})
		}
	}
	mode, _ := attrs["mode"].(stdlib.Ident)
	_, hasInc := attrs["incrementing_column"]
	_, hasTS := attrs["timestamp_column"]
	if (mode == "incrementing" || mode == "timestamp_incrementing") && !hasInc {
		errs = append(errs, stdlib.AttrError{Attr: "mode", Message: fmt.Sprintf("mode %s needs incrementing_column", mode)})
	}
	if (mode == "timestamp" || mode == "timestamp_incrementing") && !hasTS {
		errs = append(errs, stdlib.AttrError{Attr: "mode", Message: fmt.Sprintf("mode %s needs timestamp_column", mode)})
	}
	errs = append(errs, stdlib.Positive(attrs, "batch", "poll")...)
	if d, ok := attrs["delay"].(time.Duration); ok && d < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "delay", Message: "delay must not be negative"})
	}
	return append(errs, retry.Check(attrs)...)
}

// ReadMode is how a source reads its table.
type ReadMode int

const (
	ModeIncrementing ReadMode = iota
	ModeTimestamp
	ModeTimestampIncrementing
	ModeBulk
)

// ParseReadMode reads the mode attribute.
func ParseReadMode(s string) (ReadMode, error) {
	switch s {
	case "incrementing":
		return ModeIncrementing, nil
	case "timestamp":
		return ModeTimestamp, nil
	case "timestamp_incrementing":
		return ModeTimestampIncrementing, nil
	case "bulk":
		return ModeBulk, nil
	}
	return 0, fmt.Errorf("unknown mode %q", s)
}

// Incrementing reports whether the mode reads by the incrementing column.
func (m ReadMode) Incrementing() bool {
	return m == ModeIncrementing || m == ModeTimestampIncrementing
}

// Timestamped reports whether the mode reads by the timestamp column.
func (m ReadMode) Timestamped() bool { return m == ModeTimestamp || m == ModeTimestampIncrementing }

// Dialect is what the incremental queries need of a SQL dialect.
type Dialect interface {
	Quote(name string) string
	// Param is the placeholder of the n-th argument, from 1.
	Param(n int) string
	// Older is the condition "column ts is older than now minus the delay
	// given as argument arg", and DelayArg that argument.
	Older(ts, arg string) string
	DelayArg(d time.Duration) any
	// TimeArg is the argument comparing a timestamp column with t.
	TimeArg(t time.Time) any
}

// Query builds the statements of an incremental source.
type Query struct {
	D       Dialect
	From    string // the table, or the query as a derived table
	Mode    ReadMode
	Inc, TS string
	Batch   int
	Delay   time.Duration
}

// Next returns the statement reading the next batch after offset last
// (from the start when !hasLast): in incrementing mode the rows whose
// incrementing column is greater, in timestamp modes those whose
// timestamp (in microseconds since the epoch) is.
func (q *Query) Next(last int64, hasLast bool) (string, []any) {
	if q.Mode == ModeIncrementing {
		sql := "SELECT * FROM " + q.From
		var args []any
		if hasLast {
			sql += " WHERE " + q.D.Quote(q.Inc) + " > " + q.D.Param(1)
			args = append(args, last)
		}
		return sql + " ORDER BY " + q.D.Quote(q.Inc) + fmt.Sprintf(" LIMIT %d", q.Batch), args
	}
	conds := []string{q.D.Older(q.D.Quote(q.TS), q.D.Param(1))}
	args := []any{q.D.DelayArg(q.Delay)}
	if hasLast {
		conds = append(conds, q.D.Quote(q.TS)+" > "+q.D.Param(2))
		args = append(args, q.D.TimeArg(time.UnixMicro(last).UTC()))
	}
	return "SELECT * FROM " + q.From + " WHERE " + strings.Join(conds, " AND ") + " ORDER BY " + q.order() +
		fmt.Sprintf(" LIMIT %d", q.Batch), args
}

func (q *Query) order() string {
	order := q.D.Quote(q.TS)
	if q.Mode == ModeTimestampIncrementing {
		order += ", " + q.D.Quote(q.Inc)
	}
	return order
}

// Group returns the statement reading every row of one timestamp.
func (q *Query) Group(ts int64) (string, []any) {
	return "SELECT * FROM " + q.From + " WHERE " + q.D.Quote(q.TS) + " = " + q.D.Param(1) + " ORDER BY " + q.order(),
		[]any{q.D.TimeArg(time.UnixMicro(ts).UTC())}
}

// WholeGroups cuts a full batch read in a timestamp mode after its last
// whole group of rows sharing one timestamp, so that a position covers
// its whole group. It returns the records to emit or, when the whole
// batch is one group (whole), that group's timestamp: then every row of
// it must be read (see [Query.Group]).
func WholeGroups(recs []stdlib.Record, batch int) (keep []stdlib.Record, group int64, whole bool) {
	if len(recs) < batch {
		return recs, 0, false
	}
	lastTS := recs[len(recs)-1].Pos.Offset
	n := len(recs)
	for n > 0 && recs[n-1].Pos.Offset == lastTS {
		n--
	}
	if n > 0 {
		return recs[:n], 0, false
	}
	return nil, lastTS, true
}

// SourceColumn is a column a source reads.
type SourceColumn interface {
	Column
	Timestamp() bool       // a timestamp or date type
	LangType() *types.Type // the type of the values read from it
}

// CheckColumns checks that the mode's columns are among cols with a type
// that fits, and that the declared schema (when not nil) fits the columns.
// what names the table or query for messages; warn is told of a nullable
// column read into a non-optional field.
func CheckColumns[C SourceColumn](cols []C, mode ReadMode, inc, ts string, schema *types.Type, what string,
	warn func(column string)) error {
	find := func(name string) (C, bool) {
		for _, c := range cols {
			if c.ColumnName() == name {
				return c, true
			}
		}
		var zero C
		return zero, false
	}
	if mode.Incrementing() {
		c, ok := find(inc)
		if !ok {
			return fmt.Errorf("incrementing_column %q is not a column of %s", inc, what)
		}
		if !c.Integer() {
			return fmt.Errorf("incrementing_column %q is %s, not an integer", inc, c.ColumnType())
		}
	}
	if mode.Timestamped() {
		c, ok := find(ts)
		if !ok {
			return fmt.Errorf("timestamp_column %q is not a column of %s", ts, what)
		}
		if !c.Timestamp() {
			return fmt.Errorf("timestamp_column %q is %s, not a timestamp", ts, c.ColumnType())
		}
	}
	if schema == nil {
		return nil
	}
	var problems []string
	for _, f := range schema.Fields {
		c, ok := find(f.Name)
		if !ok {
			problems = append(problems, fmt.Sprintf("field %q of schema %s has no column in %s", f.Name, schema, what))
			continue
		}
		ct := c.LangType()
		if err := types.AssignableTo(ct.WithOptional(false), f.Type.WithOptional(false)); err != nil {
			problems = append(problems, fmt.Sprintf("field %q (%s) does not fit column %q (%s) of %s: %v",
				f.Name, f.Type, f.Name, c.ColumnType(), what, err))
			continue
		}
		if ct.Optional && !f.Type.Optional {
			warn(f.Name)
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// ColumnsType is the record type of a source's columns.
func ColumnsType[C SourceColumn](cols []C) *types.Type {
	fields := make([]*types.Field, len(cols))
	for i, c := range cols {
		fields[i] = &types.Field{Name: c.ColumnName(), Type: c.LangType()}
	}
	return types.RecordOf(fields...)
}

// Class groups the column types of a server by the values they take.
type Class int

// The classes of column types.
const (
	ClassOther Class = iota
	ClassInt
	ClassFloat
	ClassDecimal // decimal, numeric
	ClassText
	ClassBool
	ClassTime
	ClassBytes
	ClassJSON
	ClassUUID
)

// LangType returns the lang type of the values a column of class c gives.
func (c Class) LangType() *types.Type {
	switch c {
	case ClassInt:
		return types.IntType
	case ClassFloat, ClassDecimal:
		return types.FloatType
	case ClassBool:
		return types.BoolType
	case ClassTime:
		return types.TimestampType
	case ClassBytes:
		return types.BytesType
	case ClassJSON:
		return types.AnyType
	default:
		return types.StringType
	}
}

// writable names the classes of columns that take values of each kind, on
// every server.
var writable = map[types.Kind][]Class{
	types.String:    {ClassText, ClassUUID, ClassJSON, ClassTime, ClassOther},
	types.Int:       {ClassInt, ClassFloat, ClassDecimal, ClassJSON},
	types.Float:     {ClassFloat, ClassDecimal, ClassJSON},
	types.Bool:      {ClassBool, ClassJSON},
	types.Timestamp: {ClassTime, ClassJSON},
	types.Bytes:     {ClassBytes},
	types.List:      {ClassJSON},
	types.Map:       {ClassJSON},
	types.Record:    {ClassJSON},
}

// Compatible reports why values of field type t cannot be written to a
// column of class cl and SQL type sqlType, or nil if they can. also names
// the classes a server takes beyond those every server takes.
func Compatible(t *types.Type, cl Class, sqlType string, also map[types.Kind][]Class) error {
	if t == nil || t.Kind == types.Any {
		return nil
	}
	if !slices.Contains(writable[t.Kind], cl) && !slices.Contains(also[t.Kind], cl) {
		return fmt.Errorf("a %s cannot be written to a %s column", t.WithOptional(false), sqlType)
	}
	return nil
}
