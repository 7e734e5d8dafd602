package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/schemareg"
)

// debeziumAvro is the format of Debezium change events in Avro through a
// schema registry (Debezium's AvroConverter): an Envelope record with
// before and after as optional row records, source, op, ts_ms and
// transaction.
const debeziumAvro = "debezium_avro"

// avroFormat reports whether format goes through the schema registry as
// Avro.
func avroFormat(format string) bool { return format == "avro" || format == debeziumAvro }

// debeziumAvroDecoder reads an envelope as its row, like the debezium
// format: the row after the change (before it, for a delete) with the
// operation in __op.
type debeziumAvroDecoder struct {
	decodeOnly
	env *avroDecoder
}

func newDebeziumAvroDecoder(reg *schemareg.Client, row *types.Type) (*debeziumAvroDecoder, error) {
	var env *types.Type
	if row != nil && row.Kind == types.Record {
		// before may hold the key's columns only (a replica identity):
		// its fields read as optional.
		after := &types.Type{Kind: types.Record, Name: row.Name, Optional: true}
		before := &types.Type{Kind: types.Record, Name: row.Name, Optional: true}
		for _, f := range row.Fields {
			if f.Name != codec.DebeziumOp {
				after.Fields = append(after.Fields, f)
				before.Fields = append(before.Fields, &types.Field{Name: f.Name, Type: f.Type.WithOptional(true)})
			}
		}
		env = types.RecordOf(&types.Field{Name: "before", Type: before}, &types.Field{Name: "after", Type: after},
			&types.Field{Name: "op", Type: types.StringType})
	}
	d, err := newAvroDecoder(reg, env)
	if err != nil {
		return nil, err
	}
	return &debeziumAvroDecoder{decodeOnly: "debezium_avro", env: d}, nil
}

func (d *debeziumAvroDecoder) Decode(data []byte) (map[string]any, error) {
	v, err := d.env.value(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a Debezium change event: the value is not a record")
	}
	row, op, err := codec.DebeziumRow(m)
	if err != nil {
		return nil, err
	}
	row[codec.DebeziumOp] = op
	return row, nil
}

// debeziumEnvelope is the value written for change record v.
func debeziumEnvelope(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("format debezium_avro writes change records, not %T", v)
	}
	return codec.DebeziumEnvelope(m, time.Now())
}

// changeRow returns the type of the rows of change records of type t.
func changeRow(t *types.Type) (*types.Type, error) {
	if err := codec.CheckDebezium(t); err != nil {
		return nil, err
	}
	if t == nil || t.Kind != types.Record {
		return nil, errors.New("register = true needs the type of the change records written: declare the postgres_cdc source's schema")
	}
	row := t.Field("after").Type
	if row.Kind != types.Record || len(row.Fields) == 0 {
		return nil, fmt.Errorf("register = true needs the type of the rows: the change records' after is %s (declare the postgres_cdc source's schema)", row)
	}
	return row, nil
}

// debeziumEnvelopeSchema is the Avro schema of the envelopes of change
// records of type t, in the shape of Debezium's AvroConverter for its
// PostgreSQL connector: after is the row record, named Value (as SchemaOf
// derives it from the row type), the envelope Envelope. before is Value
// too when the change records' before has the rows' type; postgres_cdc's
// before holds the replica identity's columns only, each optional, and is
// then a record of its own, Before.
func debeziumEnvelopeSchema(t *types.Type) (havro.Schema, error) {
	row, err := changeRow(t)
	if err != nil {
		return nil, err
	}
	value, err := rowSchemaJSON(row, "Value")
	if err != nil {
		return nil, err
	}
	before, after := value, `"Value"`
	if bt := t.Field("before").Type; bt.Kind == types.Record && len(bt.Fields) > 0 {
		b, err := rowSchemaJSON(bt, "Value")
		if err != nil {
			return nil, err
		}
		if b != value {
			if before, err = rowSchemaJSON(bt, "Before"); err != nil {
				return nil, err
			}
			after = value
		}
	}
	const optLong = `"type":["null","long"],"default":null`
	text := `{"type":"record","name":"Envelope","fields":[` +
		`{"name":"before","type":["null",` + before + `],"default":null},` +
		`{"name":"after","type":["null",` + after + `],"default":null},` +
		`{"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.postgresql","fields":[` +
		`{"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},` +
		`{"name":"ts_ms",` + optLong + `},{"name":"snapshot","type":["string","null"],"default":"false"},` +
		`{"name":"db","type":["null","string"],"default":null},{"name":"schema","type":"string"},{"name":"table","type":"string"},` +
		`{"name":"txId",` + optLong + `},{"name":"lsn",` + optLong + `},{"name":"xmin",` + optLong + `}]}},` +
		`{"name":"op","type":"string"},` +
		`{"name":"ts_ms",` + optLong + `},` +
		`{"name":"transaction","type":["null",{"type":"record","name":"block","namespace":"event","fields":[` +
		`{"name":"id","type":"string"},{"name":"total_order","type":"long"},{"name":"data_collection_order","type":"long"}]}],"default":null}]}`
	return havro.ParseWithCache(text, "", &havro.SchemaCache{})
}

// rowSchemaJSON is the Avro schema (JSON) of rows of type row, a record
// named name, without the __op field.
func rowSchemaJSON(row *types.Type, name string) (string, error) {
	r := &types.Type{Kind: types.Record, Name: name}
	for _, f := range row.Fields {
		if f.Name != codec.DebeziumOp {
			r.Fields = append(r.Fields, f)
		}
	}
	rs, err := avro.SchemaOf(r)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(rs)
	return string(b), err
}
