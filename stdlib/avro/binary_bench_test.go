package avro_test

import (
	"testing"
	"time"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/schemareg"
)

// The benchmarks measure one record of the benchmark shape (bench/RESULTS.md)
// in Avro, in the Confluent wire format, beside the JSON codec on the same
// record with the same declared type. Results: bench/RESULTS-avro.md.

const benchSchema = `{"type":"record","name":"Event","fields":[
  {"name":"id","type":"long"},{"name":"user","type":"string"},{"name":"amount","type":"double"},
  {"name":"country","type":"string"},{"name":"event","type":"string"},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}}]}`

var benchRecord = map[string]any{"id": int64(1), "user": "u1", "amount": 79.19, "country": "NL", "event": "purchase",
	"ts": time.Date(2024, 1, 1, 0, 0, 1, 0, time.UTC)}

func benchSetup(b *testing.B) (havro.Schema, *types.Type) {
	s, err := havro.Parse(benchSchema)
	if err != nil {
		b.Fatal(err)
	}
	t, err := avro.TypeOf(s)
	if err != nil {
		b.Fatal(err)
	}
	return s, t
}

func perSecond(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAvroDecode(b *testing.B) {
	s, t := benchSetup(b)
	msg, err := avro.NewEncoder(s).Append(schemareg.Append(nil, 1), benchRecord)
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, msg, func(payload []byte) error {
		_, err := avro.Decode(s, t, payload)
		return err
	})
}

// benchDecode decodes wire-format message msg with decode per op.
func benchDecode(b *testing.B, msg []byte, decode func(payload []byte) error) {
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		_, payload, err := schemareg.Parse(msg)
		if err != nil {
			b.Fatal(err)
		}
		if err := decode(payload); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b)
}

func BenchmarkAvroEncode(b *testing.B) {
	s, _ := benchSetup(b)
	enc := avro.NewEncoder(s)
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = enc.Append(schemareg.Append(buf[:0], 1), benchRecord); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
	perSecond(b)
}

func BenchmarkJSONDecode(b *testing.B) {
	_, t := benchSetup(b)
	c, err := codec.New("json", t, codec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := c.Append(nil, benchRecord)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := c.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b)
}

func BenchmarkJSONEncode(b *testing.B) {
	_, t := benchSetup(b)
	c, err := codec.New("json", t, codec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var buf []byte
	for b.Loop() {
		if buf, err = c.Append(buf[:0], benchRecord); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
	perSecond(b)
}

// BenchmarkAvroResolveDecode decodes the same message resolved against a
// reader schema read from an .avsc (Resolver: hamba/avro's resolution,
// here with one field promoted and one added with a default).
func BenchmarkAvroResolveDecode(b *testing.B) {
	s, _ := benchSetup(b)
	reader, err := havro.Parse(`{"type":"record","name":"Event","fields":[
  {"name":"id","type":"long"},{"name":"user","type":"string"},{"name":"amount","type":"double"},
  {"name":"country","type":"string"},{"name":"event","type":"bytes"},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"channel","type":"string","default":"web"}]}`)
	if err != nil {
		b.Fatal(err)
	}
	r, err := avro.NewResolver(reader, s)
	if err != nil {
		b.Fatal(err)
	}
	msg, err := avro.NewEncoder(s).Append(schemareg.Append(nil, 1), benchRecord)
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, msg, func(payload []byte) error {
		_, err := r.Decode(payload)
		return err
	})
}
