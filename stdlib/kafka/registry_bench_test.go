package kafka

import (
	"testing"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/jsonschema"
	"pipe.dev/pipe/stdlib/protobuf"
	"pipe.dev/pipe/stdlib/schemareg"
	"pipe.dev/pipe/stdlib/schemareg/devreg"
)

// The benchmarks below decode and encode one record of the benchmark shape
// (bench/RESULTS.md) in each format through the kafka source's decoders
// and sink's encoders, the registry formats in the Confluent wire format
// with the schema id already looked up, all typed by the same schema:
// results in bench/RESULTS-registry-formats.md.

const benchEvent = `{"id":1,"user":"u1","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}`

const benchEventSchema = `{"title":"bench.Event","type":"object","properties":{
  "id":{"type":"integer"},"user":{"type":"string"},"amount":{"type":"number"},
  "country":{"type":"string"},"event":{"type":"string"},"ts":{"type":"string","format":"date-time"}},
  "required":["id","user","amount","country","event","ts"]}`

// benchCodec is what the kafka source and sink use for one format.
type benchCodec struct {
	dec codec.Codec
	enc func(dst []byte, v map[string]any) ([]byte, error)
}

func benchFormats(b *testing.B) (map[string]benchCodec, map[string]any) {
	pt, err := protobuf.Compile("../protobuf/testdata/event.proto", "bench.Event", nil)
	if err != nil {
		b.Fatal(err)
	}
	jt, err := jsonschema.TypeOf([]byte(benchEventSchema))
	if err != nil {
		b.Fatal(err)
	}
	js, err := codec.New("json", pt, codec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rec, err := js.Decode([]byte(benchEvent))
	if err != nil {
		b.Fatal(err)
	}
	reg, err := devreg.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = reg.Close() })
	cl, err := schemareg.New(schemareg.Options{URL: reg.URL()})
	if err != nil {
		b.Fatal(err)
	}
	as, err := avro.SchemaOf(pt)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cl.Register(b.Context(), "bench-avro-value", as.String()); err != nil {
		b.Fatal(err)
	}
	out := map[string]benchCodec{"json": {dec: js, enc: js.Append}}
	for _, c := range []struct {
		format string
		t      *types.Type
	}{{"avro", pt}, {"protobuf", pt}, {"json_schema", jt}} {
		attrs := map[string]any{"topic": "bench-" + c.format, "format": stdlib.Ident(c.format), "registry": reg.URL(),
			"subject_strategy": stdlib.Ident("topic"), "register": c.format != "avro"}
		cfg := config("bench", "127.0.0.1:1", attrs)
		cfg.Schema = c.t
		e, err := newEncoder(cfg, cl, false)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.open(b.Context(), "bench-"+c.format); err != nil {
			b.Fatal(err)
		}
		d, err := newValueDecoder(cfg, cl)
		if err != nil {
			b.Fatal(err)
		}
		topic := "bench-" + c.format
		out[c.format] = benchCodec{dec: d, enc: func(dst []byte, v map[string]any) ([]byte, error) {
			return e.appendValue(dst, topic, v)
		}}
	}
	return out, rec
}

func BenchmarkRegistryFormats(b *testing.B) {
	formats, rec := benchFormats(b)
	for _, name := range []string{"json", "avro", "protobuf", "json_schema"} {
		c := formats[name]
		msg, err := c.enc(nil, rec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.dec.Decode(msg); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		b.Run(name+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.dec.Decode(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run(name+"/encode", func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				if buf, err = c.enc(buf[:0], rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
