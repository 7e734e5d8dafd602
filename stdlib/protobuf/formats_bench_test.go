package protobuf_test

import (
	"testing"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib/avro"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/protobuf"
)

// The benchmarks below decode and encode one record of the benchmark shape
// in each binary format beside JSON, all typed by the same schema
// (testdata/event.proto): results in bench/RESULTS-formats.md.

const benchLine = `{"id":1,"user":"u1","amount":79.19,"country":"NL","event":"purchase","ts":"2024-01-01T00:00:01Z"}`

func benchType(b *testing.B) *types.Type {
	t, err := protobuf.Compile("testdata/event.proto", "bench.Event", nil)
	if err != nil {
		b.Fatal(err)
	}
	// The ts of a Timestamp message is optional; the record has it.
	return t
}

func benchRecord(b *testing.B, t *types.Type) map[string]any {
	j, err := codec.New("json", t, codec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	m, err := j.Decode([]byte(benchLine))
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchDecode(b *testing.B, c codec.Codec, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func benchEncode(b *testing.B, c codec.Codec, m map[string]any) {
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = c.Append(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkFormats(b *testing.B) {
	t := benchType(b)
	m := benchRecord(b, t)
	js, err := codec.New("json", t, codec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	pb, err := codec.New("protobuf", t, codec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	pbData, err := pb.Append(nil, m)
	if err != nil {
		b.Fatal(err)
	}
	aw, err := avro.NewWriter(t)
	if err != nil {
		b.Fatal(err)
	}
	avroData, err := aw.Append(nil, m)
	if err != nil {
		b.Fatal(err)
	}
	header, err := aw.Header(nil)
	if err != nil {
		b.Fatal(err)
	}
	ar, err := avro.ParseHeader(header, t)
	if err != nil || ar == nil {
		b.Fatal(err)
	}
	ad := avroDecoder{r: ar, block: aw.Block(nil, 1, avroData)}
	b.Run("decode/json", func(b *testing.B) { benchDecode(b, js, []byte(benchLine)) })
	b.Run("decode/avro", func(b *testing.B) { benchDecode(b, ad, avroData) })
	b.Run("decode/protobuf", func(b *testing.B) { benchDecode(b, pb, pbData) })
	b.Run("encode/json", func(b *testing.B) { benchEncode(b, js, m) })
	b.Run("encode/avro", func(b *testing.B) { benchEncode(b, aw, m) })
	b.Run("encode/protobuf", func(b *testing.B) { benchEncode(b, pb, m) })
}

// avroDecoder decodes one record of Avro binary the way the file source
// does: a block of one record through avro.Reader (the bytes measured are
// the record's).
type avroDecoder struct {
	r     *avro.Reader
	block []byte
}

func (d avroDecoder) Decode([]byte) (map[string]any, error) {
	var out map[string]any
	var derr error
	err := d.r.Records(d.block, func(_ int, v map[string]any, err error) { out, derr = v, err })
	if err == nil {
		err = derr
	}
	return out, err
}

func (avroDecoder) Append([]byte, map[string]any) ([]byte, error) { return nil, nil }
