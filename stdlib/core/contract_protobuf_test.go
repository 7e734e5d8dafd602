package core

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/protobuf"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestFileContractProtobuf runs the contract suite on the file source and
// sink with format = protobuf: length-delimited messages, positions after
// whole messages, resumed there.
func TestFileContractProtobuf(t *testing.T) {
	dir := t.TempDir()
	proto := filepath.Join(dir, "rec.proto")
	writeFile(t, proto, "syntax = \"proto3\";\npackage c;\nmessage Rec {\n  int64 id = 1;\n  string name = 2;\n}\n")
	typ, err := protobuf.Compile(proto, "c.Rec", nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := protobuf.NewCodec(typ)
	if err != nil {
		t.Fatal(err)
	}
	stdlibtest.Run(t, stdlibtest.Connector{
		Source: FileSourceSpec,
		Sink:   FileSinkSpec,
		Target: func(t *testing.T) *stdlibtest.Target {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.pb"), filepath.Join(dir, "out.pb")
			writeFile(t, in, "")
			return &stdlibtest.Target{
				Source: map[string]any{"path": in, "format": stdlib.Ident("protobuf")},
				Sink:   map[string]any{"path": out, "format": stdlib.Ident("protobuf")},
				Schema: typ,
				Input:  typ,
				Produce: func(t *testing.T, ids []int64) {
					var b []byte
					for _, id := range ids {
						m, err := pc.Append(nil, map[string]any{"id": id, "name": "n"})
						if err != nil {
							t.Fatal(err)
						}
						b = append(binary.AppendUvarint(b, uint64(len(m))), m...)
					}
					appendFile(t, in, string(b))
				},
				Written: func(t *testing.T) []int64 {
					data, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					var ids []int64
					for len(data) > 0 {
						n, k := binary.Uvarint(data)
						if k <= 0 || uint64(len(data)-k) < n {
							t.Fatalf("%s: a frame cut short", out)
						}
						v, err := pc.Decode(data[k : k+int(n)])
						if err != nil {
							t.Fatalf("%s: %v", out, err)
						}
						ids = append(ids, v["id"].(int64))
						data = data[k+int(n):]
					}
					return ids
				},
			}
		},
		Bad: func(pos stdlib.Position) stdlib.Record {
			return stdlib.Record{Value: map[string]any{"id": "not an int"}, Pos: pos}
		},
		BreakCommit: breakFileCommit,
	})
}
