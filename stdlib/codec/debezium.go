package codec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"pipe.dev/pipe/lang/types"
)

// debeziumCodec is the debezium format: the JSON change event envelope of
// Debezium's PostgreSQL connector ({before, after, source, op, ts_ms}).
//
// Encoding takes a change record ({op, table, xid, lsn, commit_time,
// before, after}, as the postgres_cdc source reads them) and writes its
// envelope. Decoding takes an envelope (bare, or as the payload of a
// {schema, payload} message) and returns the row like Debezium's
// ExtractNewRecordState: the row after the change (before it, for a
// delete) with its operation in the field "__op" (insert, update, delete
// or read), which the database sinks act on (a delete deletes the key).
type debeziumCodec struct {
	schema      *types.Type
	arena       Arena
	keepInvalid bool
	now         func() time.Time
}

// DebeziumOp is the field of a decoded Debezium event holding its
// operation.
const DebeziumOp = "__op"

// debeziumOps maps a change record's op to Debezium's.
var debeziumOps = map[string]string{"insert": "c", "update": "u", "delete": "d", "truncate": "t", "read": "r"}

// debeziumNames maps Debezium's op to a change record's.
var debeziumNames = map[string]string{"c": "insert", "u": "update", "d": "delete", "t": "truncate", "r": "read"}

func newDebezium(schema *types.Type, keep bool) *debeziumCodec {
	return &debeziumCodec{schema: schema, keepInvalid: keep, now: time.Now}
}

// Decode implements Codec.
func (c *debeziumCodec) Decode(data []byte) (map[string]any, error) {
	m, err := decodeObject(data, &c.arena, false, c.keepInvalid)
	if err != nil {
		return nil, err
	}
	if p, ok := m["payload"].(map[string]any); ok {
		if _, ok := m["schema"]; ok {
			m = p
		}
	}
	row, op, err := DebeziumRow(m)
	if err != nil {
		return nil, err
	}
	if c.schema != nil {
		if c.schema.Field(DebeziumOp) == nil {
			delete(row, DebeziumOp)
		}
		if err := coerceRecord(row, c.schema, ""); err != nil {
			return nil, err
		}
	}
	row[DebeziumOp] = op
	return row, nil
}

// DebeziumRow returns the row of a decoded Debezium change event m
// ({before, after, op, …}) as ExtractNewRecordState does: the row after
// the change, before it for a delete, with the change record's name of
// the operation (insert, update, delete, read). A truncate, an unknown op
// or a missing row is an error.
func DebeziumRow(m map[string]any) (row map[string]any, op string, err error) {
	code, ok := m["op"].(string)
	if !ok {
		return nil, "", errors.New("not a Debezium change event: no op field")
	}
	op, ok = debeziumNames[code]
	if !ok {
		return nil, "", fmt.Errorf("a Debezium change event of unknown op %q", code)
	}
	field := "after"
	if op == "delete" {
		field = "before"
	}
	row, ok = m[field].(map[string]any)
	if !ok {
		if op == "truncate" {
			return nil, "", errors.New("a Debezium truncate event carries no row")
		}
		return nil, "", fmt.Errorf("a Debezium %s event without %s", op, field)
	}
	return row, op, nil
}

// DebeziumEnvelope returns the Debezium envelope of change record v as a
// value ({before, after, source, op, ts_ms, transaction}, source as the
// JSON format writes it), for formats that encode it by a schema; now is
// the envelope's ts_ms.
func DebeziumEnvelope(v map[string]any, now time.Time) (map[string]any, error) {
	h, err := envelopeHead(v)
	if err != nil {
		return nil, err
	}
	var db any
	if s, ok := v["db"].(string); ok {
		db = s
	}
	return map[string]any{
		"before": v["before"], "after": v["after"],
		"source": map[string]any{"version": "pipe", "connector": "postgresql", "name": "pipe", "ts_ms": h.tsMS,
			"snapshot": h.snapshot, "db": db, "schema": h.schema, "table": h.table, "txId": v["xid"], "lsn": h.lsn, "xmin": nil},
		"op": h.code, "ts_ms": now.UnixMilli(), "transaction": nil,
	}, nil
}

// head is what an envelope says of a change record beside its rows.
type head struct {
	code, schema, table, snapshot string
	tsMS, lsn                     any // int64 or nil
}

func envelopeHead(v map[string]any) (head, error) {
	op, _ := v["op"].(string)
	code, ok := debeziumOps[op]
	if !ok {
		return head{}, fmt.Errorf("format debezium: the record is not a change: its op is %v, not insert, update, delete, truncate or read", v["op"])
	}
	h := head{code: code, snapshot: "false"}
	table, _ := v["table"].(string)
	h.schema, h.table, _ = strings.Cut(table, ".")
	if h.table == "" {
		h.schema, h.table = "", h.schema
	}
	if t, ok := v["commit_time"].(time.Time); ok {
		h.tsMS = t.UnixMilli()
	}
	if s, ok := v["lsn"].(string); ok {
		n, err := parseLSN(s)
		if err != nil {
			return head{}, fmt.Errorf("format debezium: field \"lsn\": %w", err)
		}
		h.lsn = n
	}
	if op == "read" {
		h.snapshot = "true"
	}
	return h, nil
}

// Append implements Codec: the envelope of change record v.
func (c *debeziumCodec) Append(dst []byte, v map[string]any) ([]byte, error) {
	h, err := envelopeHead(v)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `{"before":`...)
	if dst, err = appendValue(dst, v["before"]); err != nil {
		return dst, fmt.Errorf("field \"before\": %w", err)
	}
	dst = append(dst, `,"after":`...)
	if dst, err = appendValue(dst, v["after"]); err != nil {
		return dst, fmt.Errorf("field \"after\": %w", err)
	}
	dst = append(dst, `,"source":{"version":"pipe","connector":"postgresql","name":"pipe","ts_ms":`...)
	dst, _ = appendValue(dst, h.tsMS)
	dst = append(dst, `,"snapshot":`...)
	dst = appendString(dst, h.snapshot)
	dst = append(dst, `,"db":`...)
	dst, _ = appendValue(dst, v["db"])
	dst = append(dst, `,"schema":`...)
	dst = appendString(dst, h.schema)
	dst = append(dst, `,"table":`...)
	dst = appendString(dst, h.table)
	dst = append(dst, `,"txId":`...)
	if dst, err = appendValue(dst, v["xid"]); err != nil {
		return dst, fmt.Errorf("field \"xid\": %w", err)
	}
	dst = append(dst, `,"lsn":`...)
	dst, _ = appendValue(dst, h.lsn)
	dst = append(dst, `,"xmin":null},"op":`...)
	dst = appendString(dst, h.code)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, c.now().UnixMilli(), 10)
	return append(dst, `,"transaction":null}`...), nil
}

// parseLSN parses a PostgreSQL LSN ("16/B374D848") into its number.
func parseLSN(s string) (int64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if ok {
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if err1 == nil && err2 == nil {
			return int64(h<<32 | l), nil
		}
	}
	return 0, fmt.Errorf("%q is not an LSN", s)
}

// CheckDebezium reports why records of type t cannot be written as
// Debezium envelopes: they must be change records, with an op and the rows
// before and after. nil when t is unknown (nil or any) or fits.
func CheckDebezium(t *types.Type) error {
	if t == nil || t.Kind == types.Any {
		return nil
	}
	if t.Kind != types.Record {
		return fmt.Errorf("format debezium writes change records ({op, table, xid, lsn, commit_time, before, after}, as postgres_cdc reads them), not %s", t)
	}
	var missing []string
	for _, f := range []string{"op", "before", "after"} {
		if t.Field(f) == nil {
			missing = append(missing, f)
		}
	}
	if f := t.Field("op"); f != nil && f.Type.Kind != types.String && f.Type.Kind != types.Any {
		return fmt.Errorf("format debezium writes change records: field op is %s, not a string", f.Type)
	}
	if len(missing) > 0 {
		return fmt.Errorf("format debezium writes change records ({op, table, xid, lsn, commit_time, before, after}, as postgres_cdc reads them): the records lack %s", strings.Join(missing, ", "))
	}
	return nil
}
