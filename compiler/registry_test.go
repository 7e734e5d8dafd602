package compiler

import (
	"pipe.dev/pipe/compiler/ir"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// testRegistry describes the components the compiler tests use.
func testRegistry() *stdlib.Registry {
	return stdlib.NewRegistry(
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "gen", Bounded: true,
			Params: []stdlib.Param{
				{Name: "count", Type: stdlib.Int, Default: int64(10)},
				{Name: "interval", Type: stdlib.Duration, Default: time.Second},
				{Name: "labels", Type: stdlib.MapOf(stdlib.String)},
			},
			Output: func(map[string]any) *types.Type {
				return types.RecordOf(&types.Field{Name: "n", Type: types.IntType}, &types.Field{Name: "s", Type: types.StringType})
			},
		},
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "bus", Schema: true,
			Meta: []stdlib.MetaField{stdlib.MetaTopic, stdlib.MetaOffset, stdlib.MetaHeaders},
			Params: []stdlib.Param{
				{Name: "brokers", Type: stdlib.ListOf(stdlib.String), Required: true},
				{Name: "topic", Type: stdlib.String, Required: true},
				{Name: "format", Type: stdlib.Enum("json", "avro", "lines"), Default: "json"},
				{Name: "start", Type: stdlib.ParamType{Kind: stdlib.TimeParam, OrEnum: []string{"earliest", "latest"}}, Default: "latest"},
				{Name: "timeout", Type: stdlib.Duration, Default: 5 * time.Second},
				{Name: "max_bytes", Type: stdlib.Size, Default: int64(1 << 20)},
				{Name: "sasl", Type: stdlib.Block(
					stdlib.Param{Name: "mechanism", Type: stdlib.Enum("plain", "scram_sha_512"), Required: true},
					stdlib.Param{Name: "username", Type: stdlib.String},
					stdlib.Param{Name: "password", Type: stdlib.String, Secret: true},
				)},
				{Name: "tls", Type: stdlib.Block(
					stdlib.Param{Name: "insecure_skip_verify", Type: stdlib.Bool, Default: false},
				)},
			},
			Check: func(attrs map[string]any) []stdlib.AttrError {
				if f, _ := attrs["format"].(stdlib.Ident); f == "avro" {
					if _, ok := attrs["max_bytes"]; ok {
						return []stdlib.AttrError{{Attr: "max_bytes", Message: "max_bytes cannot be set with format avro"}}
					}
				}
				return nil
			},
		},
		&stdlib.Spec{Kind: stdlib.SourceKind, Name: "raw"},
		&stdlib.Spec{Kind: stdlib.TransformKind, Name: "filter"},
		&stdlib.Spec{Kind: stdlib.TransformKind, Name: "map"},
		&stdlib.Spec{Kind: stdlib.TransformKind, Name: "route",
			Params: []stdlib.Param{{Name: "mode", Type: stdlib.Enum("first", "all"), Default: "first"}}},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "out", Schema: true,
			Delivery: []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.AtMostOnce},
			Params:   []stdlib.Param{{Name: "pretty", Type: stdlib.Bool, Default: false}}},
		&stdlib.Spec{Kind: stdlib.SinkKind, Name: "bus",
			Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce, stdlib.AtMostOnce},
			Params: []stdlib.Param{
				{Name: "brokers", Type: stdlib.ListOf(stdlib.String), Required: true},
				{Name: "topic", Type: stdlib.String, Required: true, Expr: true},
				{Name: "key", Type: stdlib.String, Expr: true},
				{Name: "linger", Type: stdlib.Duration, Default: 10 * time.Millisecond},
				{Name: "batch_size", Type: stdlib.Size, Default: int64(1 << 20)},
				{Name: "headers", Type: stdlib.MapOf(stdlib.String)},
				{Name: "password", Type: stdlib.String, Secret: true},
			}},
	)
}

type irSecret = ir.Secret
