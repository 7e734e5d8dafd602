// Package sqlcommon holds what the SQL connectors (postgres, mysql) share:
// the sink's modes, the conversion of records into rows and key
// deletions, the buffering of rows across Writes and their split into
// statements, the check of a record type against a table's columns, the
// column types create_table and evolve use, the bookkeeping of the
// positions an exactly-once sink stores with its rows, and the source's
// attributes and incremental queries. What differs (the driver, the
// catalog, the SQL of each statement, the value conversions) stays with
// each connector, behind the [Column] and [Dialect] interfaces.
package sqlcommon

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// Op is a sink mode, or what one step of a transaction does.
type Op int

const (
	OpInsert Op = iota
	OpUpsert
	OpDelete
	OpDDL
)

// ParseMode reads the mode attribute.
func ParseMode(s string) (Op, error) {
	switch s {
	case "insert":
		return OpInsert, nil
	case "upsert":
		return OpUpsert, nil
	case "delete":
		return OpDelete, nil
	}
	return 0, fmt.Errorf("unknown mode %q", s)
}

func (o Op) String() string {
	return [...]string{"insert", "upsert", "delete", "ddl"}[o]
}

// SinkParams returns the attributes of a SQL sink: the connection's, then
// the ones every SQL sink takes.
func SinkParams(conn ...stdlib.Param) []stdlib.Param {
	return append(slices.Clone(conn),
		stdlib.Param{Name: "table", Type: stdlib.String, Required: true, Doc: "target table, optionally schema-qualified"},
		stdlib.Param{Name: "mode", Type: stdlib.Enum("insert", "upsert", "delete"), Default: stdlib.Ident("insert"),
			Doc: "insert rows; upsert (insert or update) by key; delete by key"},
		stdlib.Param{Name: "key", Type: stdlib.ListOf(stdlib.String),
			Doc: "key columns for upsert and delete (default: the table's primary key)"},
		stdlib.Param{Name: "batch", Type: stdlib.Int, Default: int64(10000),
			Doc: "rows per statement; at_least_once also commits every batch rows"},
		stdlib.Param{Name: "flush", Type: stdlib.Duration, Default: time.Second,
			Doc: "at_least_once: commit at least this often while records arrive"},
		stdlib.Param{Name: "create_table", Type: stdlib.Bool, Default: false,
			Doc: "create the table from the record type when it does not exist"},
		stdlib.Param{Name: "evolve", Type: stdlib.Enum("none", "add_columns"), Default: stdlib.Ident("none"),
			Doc: "add_columns: add a nullable column for each new field"},
		retry.Param,
		stdlib.Param{Name: "offsets_table", Type: stdlib.String, Default: "pipe_offsets",
			Doc: "exactly_once: table holding the positions committed with the data"},
		stdlib.Param{Name: "schema", Type: stdlib.Schema, Doc: "asserts the shape of the records written"},
	)
}

// CheckSink checks the attributes of [SinkParams]; parseTable checks a
// table name of the dialect.
func CheckSink(attrs map[string]any, parseTable func(string) error) []stdlib.AttrError {
	var errs []stdlib.AttrError
	for _, a := range []string{"table", "offsets_table"} {
		if s, ok := attrs[a].(string); ok {
			if err := parseTable(s); err != nil {
				errs = append(errs, stdlib.AttrError{Attr: a, Message: err.Error()})
			}
		}
	}
	errs = append(errs, stdlib.Positive(attrs, "batch")...)
	if d, ok := attrs["flush"].(time.Duration); ok && d < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "flush", Message: "flush must not be negative"})
	}
	errs = append(errs, retry.Check(attrs)...)
	if l, ok := attrs["key"].([]any); ok && len(l) == 0 {
		errs = append(errs, stdlib.AttrError{Attr: "key", Message: "key must name at least one column"})
	}
	return errs
}

// CheckInput is the Spec.CheckInput of the SQL sinks: create_table needs
// the type of the records, a record with fields.
func CheckInput(attrs map[string]any, records *types.Type) []stdlib.AttrError {
	if create, _ := attrs["create_table"].(bool); !create {
		return nil
	}
	if records == nil || records.Kind != types.Record || len(records.Fields) == 0 {
		return []stdlib.AttrError{{Attr: "create_table", Message: "create_table needs the type of the records to create the table from: " +
			"declare schema = Name on the sink or its source"}}
	}
	return nil
}

// RecordType returns the type of the records a sink writes: the declared
// schema, else the input type; nil when unknown. Records that are not
// records cannot be written to a table.
func RecordType(cfg stdlib.Config) (*types.Type, error) {
	t := cfg.Schema
	if t == nil {
		t = cfg.Input
	}
	if t != nil && t.Kind != types.Record {
		if t.Kind != types.Any {
			return nil, fmt.Errorf("records of type %s cannot be written to a table: want a record", t)
		}
		t = nil
	}
	return t, nil
}

// Column is a table column as a dialect describes it.
type Column interface {
	ColumnName() string
	ColumnType() string // the type as the catalog writes it
	Required() bool     // NOT NULL without a default
	Integer() bool      // an integer type
}

// Step is one unit of work done in the open transaction, kept so that it
// can be replayed in a new transaction after a connection loss.
type Step struct {
	Op   Op
	Cols []string // insert, upsert: the columns written; delete: the key columns
	Rows [][]any
	Idx  []int  // index of each row in the buffer that brought it
	DDL  string // OpDDL
}

// Item is one converted record.
type Item struct {
	Del   bool   // delete the key (else write the row)
	Row   []any  // the row, or the key values when Del
	Key   string // upsert, delete: the key, encoded
	Write uint64 // the Write that brought it
	Idx   int    // its index in that Write's batch
	Pos   stdlib.Position
}

// Buffer holds the rows not yet sent.
type Buffer struct {
	Cols  []string // columns of every buffered row
	Items []Item
	last  map[string]int // upsert, delete: key -> the item that counts
	Since time.Time      // when the oldest item came
}

// Add buffers items, of the columns cols; in upsert and delete modes the
// last item of a key is the one that counts.
func (b *Buffer) Add(mode Op, items []Item, cols []string) {
	if len(items) == 0 {
		return
	}
	if len(b.Items) == 0 {
		b.Cols = cols
		b.Since = time.Now()
		if mode != OpInsert {
			b.last = make(map[string]int, len(items))
		}
	}
	for _, it := range items {
		b.Items = append(b.Items, it)
		if mode != OpInsert {
			b.last[it.Key] = len(b.Items) - 1
		}
	}
}

// Steps returns the statements that write the buffer: the rows (unless
// mode is delete), then the deletions, each cut into steps of at most
// batch rows. A step's Idx are indexes into b.Items.
func (b *Buffer) Steps(mode Op, keys []string, batch int) []Step {
	var keep []bool // upsert, delete: only the last item of a key counts
	if b.last != nil {
		keep = make([]bool, len(b.Items))
		for _, n := range b.last {
			keep[n] = true
		}
	}
	up := Step{Op: mode, Cols: b.Cols}
	del := Step{Op: OpDelete, Cols: keys}
	for n, it := range b.Items {
		if keep != nil && !keep[n] {
			continue
		}
		if it.Del {
			del.Rows = append(del.Rows, it.Row)
			del.Idx = append(del.Idx, n)
		} else {
			up.Rows = append(up.Rows, it.Row)
			up.Idx = append(up.Idx, n)
		}
	}
	var whole []Step
	if len(up.Rows) > 0 && mode != OpDelete {
		whole = append(whole, up)
	}
	if len(del.Rows) > 0 {
		whole = append(whole, del)
	}
	var steps []Step
	for _, st := range whole {
		for start := 0; start < len(st.Rows); start += batch {
			end := min(start+batch, len(st.Rows))
			steps = append(steps, Step{Op: st.Op, Cols: st.Cols, Rows: st.Rows[start:end], Idx: st.Idx[start:end]})
		}
	}
	return steps
}

// Flush sends the buffer through apply, one step at a time, and empties
// it. It returns the rows the database rejected that came with the
// current Write (write), indexed in its batch; the rejection of a row of
// an earlier Write, which can no longer be reported against its record,
// fails the call.
func (b *Buffer) Flush(mode Op, keys []string, batch int, write uint64,
	apply func(Step) (stdlib.RecordErrors, error)) (stdlib.RecordErrors, error) {
	buf := *b
	*b = Buffer{}
	var rejected stdlib.RecordErrors
	var late []string
	for _, st := range buf.Steps(mode, keys, batch) {
		rerrs, err := apply(st)
		if err != nil {
			return nil, err
		}
		for _, re := range rerrs {
			it := buf.Items[re.Index]
			if it.Write == write {
				rejected = append(rejected, stdlib.RecordError{Index: it.Idx, Err: re.Err})
			} else {
				late = append(late, fmt.Sprintf("record at %s: %v", it.Pos, re.Err))
			}
		}
	}
	if len(late) > 0 {
		return nil, fmt.Errorf("%d buffered records rejected by the database: %s", len(late), strings.Join(late, "; "))
	}
	return rejected, nil
}

// IsDelete reports whether r deletes its key (in upsert mode): a nil value
// (a tombstone), or the field "__op" equal to "delete".
func IsDelete(r *stdlib.Record) bool {
	if r.Value == nil {
		return true
	}
	m, ok := r.Value.(map[string]any)
	if !ok {
		return false
	}
	op, _ := m["__op"].(string)
	return op == "delete"
}

// Table is a table's columns, and how values are converted for them.
type Table[C Column] struct {
	Name     string // for messages
	Cols     map[string]C
	Order    []string // the columns in table order
	Mode     Op
	Keys     []string
	RType    *types.Type                   // the record type, nil if unknown
	ToColumn func(c C, v any) (any, error) // converts a value for c, checking what the server would reject
}

// SetColumns sets the columns, in table order.
func (t *Table[C]) SetColumns(cols []C) {
	t.Cols = make(map[string]C, len(cols))
	t.Order = t.Order[:0]
	for _, c := range cols {
		t.Cols[c.ColumnName()] = c
		t.Order = append(t.Order, c.ColumnName())
	}
}

// KeyValues returns r's key column values, converted: from the value's
// fields, or from the key of a tombstone (a map of key fields or, for a
// one-column key, a scalar).
func (t *Table[C]) KeyValues(r *stdlib.Record) ([]any, error) {
	out := make([]any, len(t.Keys))
	var src map[string]any
	if r.Value != nil {
		src, _ = r.Value.(map[string]any)
		if src == nil {
			return nil, fmt.Errorf("record value is %s, not a record", Describe(r.Value))
		}
	} else {
		switch k := r.Key.(type) {
		case map[string]any:
			src = k
		case nil:
			return nil, errors.New("tombstone without a key")
		default:
			if len(t.Keys) != 1 {
				return nil, fmt.Errorf("tombstone key is %s; a key of %d columns needs a record key", Describe(k), len(t.Keys))
			}
			v := k
			if b, ok := k.([]byte); ok {
				v = string(b)
			}
			if str, ok := v.(string); ok && t.Cols[t.Keys[0]].Integer() {
				n, err := strconv.ParseInt(str, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("tombstone key %q is not an integer for column %q", str, t.Keys[0])
				}
				v = n
			}
			src = map[string]any{t.Keys[0]: v}
		}
	}
	for i, k := range t.Keys {
		v, ok := src[k]
		if !ok || v == nil {
			return nil, fmt.Errorf("record has no value for key field %q", k)
		}
		cv, err := t.ToColumn(t.Cols[k], v)
		if err != nil {
			return nil, err
		}
		out[i] = cv
	}
	return out, nil
}

// Convert converts a batch into items, rejecting the records whose values
// do not fit their columns. cols are the columns written: the fields of
// the record type, or those present in the batch, and the key columns, in
// table order. write numbers the Write the batch came with.
func (t *Table[C]) Convert(batch []stdlib.Record, write uint64) ([]Item, []string, stdlib.RecordErrors) {
	var rejected stdlib.RecordErrors
	reject := func(i int, err error) {
		rejected = append(rejected, stdlib.RecordError{Index: i, Err: err})
	}
	present := map[string]bool{}
	if t.RType != nil {
		for _, f := range t.RType.Fields {
			present[f.Name] = true
		}
	}
	writes := make([]bool, len(batch)) // record i writes a row (else it deletes)
	for i := range batch {
		r := &batch[i]
		switch t.Mode {
		case OpInsert:
			writes[i] = true
		case OpUpsert:
			writes[i] = !IsDelete(r)
		}
		if !writes[i] || t.RType != nil {
			continue
		}
		if m, ok := r.Value.(map[string]any); ok {
			for f := range m {
				present[f] = true
			}
		}
	}
	var cols []string
	var missing error // a NOT NULL column without default no record feeds
	for _, name := range t.Order {
		if present[name] || slices.Contains(t.Keys, name) {
			cols = append(cols, name)
		} else if t.Cols[name].Required() && missing == nil {
			missing = fmt.Errorf("column %q is NOT NULL and the record has no field %q", name, name)
		}
	}
	colv := make([]C, len(cols))
	for j, name := range cols {
		colv[j] = t.Cols[name]
	}
	keyPos := make([]int, len(t.Keys)) // position of each key column in cols
	for i, k := range t.Keys {
		keyPos[i] = slices.Index(cols, k)
	}
	items := make([]Item, 0, len(batch))
	var sb strings.Builder
	for i := range batch {
		r := &batch[i]
		if !writes[i] {
			kv, err := t.KeyValues(r)
			if err != nil {
				reject(i, err)
				continue
			}
			items = append(items, Item{Del: true, Row: kv, Key: KeyString(&sb, kv), Write: write, Idx: i, Pos: r.Pos})
			continue
		}
		m, ok := r.Value.(map[string]any)
		if !ok {
			if r.Value == nil {
				reject(i, errors.New("a tombstone cannot be inserted (use mode = upsert to delete)"))
			} else {
				reject(i, fmt.Errorf("record value is %s, not a record", Describe(r.Value)))
			}
			continue
		}
		if missing != nil {
			reject(i, missing)
			continue
		}
		row := make([]any, len(cols))
		var bad error
		found := 0 // fields of m that have a column
		for j, name := range cols {
			v, ok := m[name]
			if ok {
				found++
			}
			v, err := t.ToColumn(colv[j], v)
			if err != nil {
				bad = fmt.Errorf("field %q: %w", name, err)
				break
			}
			row[j] = v
		}
		if bad == nil && found < len(m) {
			for f := range m {
				if _, ok := t.Cols[f]; !ok && f != "__op" && m[f] != nil {
					bad = fmt.Errorf("field %q has no column in table %q (add the column or set evolve = add_columns)", f, t.Name)
					break
				}
			}
		}
		if bad != nil {
			reject(i, bad)
			continue
		}
		it := Item{Row: row, Write: write, Idx: i, Pos: r.Pos}
		if t.Mode != OpInsert {
			kv := make([]any, len(keyPos))
			for k, j := range keyPos {
				kv[k] = row[j]
			}
			it.Key = KeyString(&sb, kv)
		}
		items = append(items, it)
	}
	return items, cols, rejected
}

// KeyString encodes converted key values as a map key.
func KeyString(sb *strings.Builder, kv []any) string {
	sb.Reset()
	for i, v := range kv {
		if i > 0 {
			sb.WriteByte(0)
		}
		switch x := v.(type) {
		case int64:
			sb.WriteString(strconv.FormatInt(x, 10))
		case int32:
			sb.WriteString(strconv.FormatInt(int64(x), 10))
		case int16:
			sb.WriteString(strconv.FormatInt(int64(x), 10))
		case string:
			sb.WriteString(x)
		case []byte:
			sb.Write(x)
		case time.Time:
			sb.WriteString(x.UTC().Format(time.RFC3339Nano))
		default:
			fmt.Fprintf(sb, "%v", x)
		}
	}
	return sb.String()
}

// Describe names the kind of a runtime value for messages.
func Describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64, int, int32:
		return "an int"
	case float64, float32:
		return "a float"
	case bool:
		return "a bool"
	case time.Time:
		return "a timestamp"
	case []byte:
		return "bytes"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("a %T", v)
}

// TypeNames are the column types create_table and evolve give the field
// types of the language.
type TypeNames struct {
	String, Int, Float, Bool, Timestamp, Bytes string
	JSON                                       string // list, map, record, any
}

// Of returns the column type for fields of type t.
func (n *TypeNames) Of(t *types.Type) string {
	if t == nil {
		return n.JSON
	}
	switch t.Kind {
	case types.String:
		return n.String
	case types.Int:
		return n.Int
	case types.Float:
		return n.Float
	case types.Bool:
		return n.Bool
	case types.Timestamp:
		return n.Timestamp
	case types.Bytes:
		return n.Bytes
	}
	return n.JSON
}

// OfValue returns the column type for a field of an untyped record, from
// its value; "" when the value says nothing (nil).
func (n *TypeNames) OfValue(v any) string {
	switch v.(type) {
	case nil:
		return ""
	case string:
		return n.String
	case int64, int, int32:
		return n.Int
	case float64, float32:
		return n.Float
	case bool:
		return n.Bool
	case time.Time:
		return n.Timestamp
	case []byte:
		return n.Bytes
	}
	return n.JSON
}

// NewColumn is a column create_table or evolve adds.
type NewColumn struct {
	Name string
	Type *types.Type // nil: from Value
	SQL  string      // its column type
}

// CheckType checks the record type against the columns: every field needs
// a column its values fit (compatible), every NOT NULL column without a
// default needs a field (unless the mode deletes), and the key columns
// must be fields. With evolve, a field without a column is returned to be
// added (typed by sqlType) instead of being a problem. warn is told of an
// optional field feeding a NOT NULL column.
func (t *Table[C]) CheckType(evolve bool, compatible func(*types.Type, C) error, sqlType func(f *types.Field) string,
	warn func(field string)) ([]NewColumn, error) {
	var problems []string
	var add []NewColumn
	for _, f := range t.RType.Fields {
		if f.Name == "__op" {
			continue
		}
		c, ok := t.Cols[f.Name]
		if !ok {
			if evolve {
				add = append(add, NewColumn{Name: f.Name, Type: f.Type, SQL: sqlType(f)})
				continue
			}
			problems = append(problems, fmt.Sprintf("field %q has no column in table %q (add the column or set evolve = add_columns)", f.Name, t.Name))
			continue
		}
		if err := compatible(f.Type, c); err != nil {
			problems = append(problems, fmt.Sprintf("field %q (%s) does not fit column %q (%s) of table %q: %v",
				f.Name, f.Type, f.Name, c.ColumnType(), t.Name, err))
			continue
		}
		if f.Type.Optional && c.Required() && !slices.Contains(t.Keys, f.Name) {
			warn(f.Name)
		}
	}
	if t.Mode != OpDelete {
		for _, name := range t.Order {
			if t.Cols[name].Required() && t.RType.Field(name) == nil {
				problems = append(problems, fmt.Sprintf("column %q of table %q is NOT NULL without a default, and the records have no field %q",
					name, t.Name, name))
			}
		}
	}
	for _, k := range t.Keys {
		if t.RType.Field(k) == nil {
			problems = append(problems, fmt.Sprintf("key column %q is not a field of the records (%s)", k, t.RType))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return add, nil
}

// CheckKeys reports a key column that is not a column of the table.
func (t *Table[C]) CheckKeys() error {
	for _, k := range t.Keys {
		if _, ok := t.Cols[k]; !ok {
			return fmt.Errorf("key column %q is not a column of table %q", k, t.Name)
		}
	}
	return nil
}

// Evolve returns the columns to add for the fields of the batch the table
// lacks, typed by the record type when it knows the field, else by the
// value; a field whose values are all null waits for a value.
func (t *Table[C]) Evolve(batch []stdlib.Record, names *TypeNames) []NewColumn {
	seen := map[string]bool{}
	var add []NewColumn
	for i := range batch {
		m, ok := batch[i].Value.(map[string]any)
		if !ok {
			continue
		}
		for f, v := range m {
			if _, ok := t.Cols[f]; ok || seen[f] || f == "__op" {
				continue
			}
			typ := ""
			if t.RType != nil && t.RType.Field(f) != nil {
				typ = names.Of(t.RType.Field(f).Type)
			} else {
				typ = names.OfValue(v)
			}
			if typ == "" {
				continue // a null says nothing of the type: wait for a value
			}
			seen[f] = true
			add = append(add, NewColumn{Name: f, SQL: typ})
		}
	}
	slices.SortFunc(add, func(a, b NewColumn) int { return strings.Compare(a.Name, b.Name) })
	return add
}

// KeyList returns the key columns sorted and comma-joined.
func KeyList(keys []string) string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return strings.Join(keys, ",")
}
