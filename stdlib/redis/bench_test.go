package redis

import (
	"context"
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/stdlib"
)

// fill adds n entries of three fields to stream, 1000 a pipeline.
func fill(b *testing.B, cl *goredis.Client, stream string, n int) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		_, err := cl.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for j := i; j < min(i+1000, n); j++ {
				p.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []any{"id", strconv.Itoa(j), "user", "u" + strconv.Itoa(j%50), "amount", "12.5"}})
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSource reads b.N entries through the source (XREADGROUP of
// 1000, records with fields, XACK after each batch as a checkpoint
// would) and, beside it, through a plain go-redis loop doing the same
// reads and acknowledgements.
func BenchmarkSource(b *testing.B) {
	cl := newClient(b)
	ctx := context.Background()
	b.Run("pipe", func(b *testing.B) {
		stream := uniq("bench-src")
		defer cl.Del(ctx, stream)
		fill(b, cl, stream, b.N)
		s, err := newSource(config(b, SourceSpec, "in", map[string]any{"stream": stream, "group": "g"}))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Open(ctx, nil); err != nil {
			b.Fatal(err)
		}
		defer s.Close(ctx)
		b.ResetTimer()
		for n := 0; n < b.N; {
			recs, err := s.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(recs) == 0 {
				continue
			}
			n += len(recs)
			last := recs[len(recs)-1].Pos
			if err := s.Commit(ctx, []stdlib.Position{last}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-redis", func(b *testing.B) {
		stream := uniq("bench-src")
		defer cl.Del(ctx, stream)
		fill(b, cl, stream, b.N)
		if err := cl.XGroupCreate(ctx, stream, "g", "0").Err(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for n := 0; n < b.N; {
			res, err := cl.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 1000, Block: -1}).Result()
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, 0, len(res[0].Messages))
			for _, m := range res[0].Messages {
				ids = append(ids, m.ID)
			}
			n += len(ids)
			if err := cl.XAck(ctx, stream, "g", ids...).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSink writes b.N records of three fields in batches of 1000
// through the sink (at_least_once: pipelined; exactly_once: a script
// with the positions at each checkpoint, every 10 batches) and, beside
// it, through a plain go-redis loop pipelining the same commands.
func BenchmarkSink(b *testing.B) {
	cl := newClient(b)
	ctx := context.Background()
	batch := func(from, to int) []stdlib.Record {
		out := make([]stdlib.Record, 0, to-from)
		for i := from; i < to; i++ {
			out = append(out, stdlib.Record{
				Value: map[string]any{"id": int64(i), "user": "u" + strconv.Itoa(i%50), "amount": 12.5},
				Pos:   stdlib.Position{Source: "in", Partition: "p", Offset: int64(i)},
			})
		}
		return out
	}
	for _, tc := range []struct {
		cmd      string
		delivery stdlib.Delivery
	}{{"xadd", stdlib.AtLeastOnce}, {"xadd", stdlib.ExactlyOnce}, {"hset", stdlib.AtLeastOnce}, {"hset", stdlib.ExactlyOnce}, {"set", stdlib.AtLeastOnce}} {
		b.Run(tc.cmd+"/"+string(tc.delivery), func(b *testing.B) {
			p := uniq("bench-sink")
			defer delPrefix(cl, p)
			attrs := map[string]any{"command": tc.cmd, "key": p + ":stream", "positions_key": p + ":pos"}
			var exprs []string
			if tc.cmd != "xadd" {
				exprs = []string{"key"}
			}
			cfg := config(b, SinkSpec, "out", attrs, exprs...)
			cfg.Delivery = tc.delivery
			s, err := newSink(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Open(ctx); err != nil {
				b.Fatal(err)
			}
			defer s.Close(ctx)
			b.ResetTimer()
			for i, k := 0, 0; i < b.N; i, k = i+1000, k+1 {
				recs := batch(i, min(i+1000, b.N))
				if tc.cmd != "xadd" {
					for j := range recs {
						recs[j].Attrs = []any{p + ":k:" + strconv.Itoa(i+j)}
					}
				}
				if err := s.Write(ctx, recs); err != nil {
					b.Fatal(err)
				}
				if k%10 == 9 || i+1000 >= b.N {
					if err := s.Checkpoint(ctx, stdlib.Checkpoint{ID: uint64(k), Positions: []stdlib.Position{recs[len(recs)-1].Pos}}); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	for _, cmd := range []string{"xadd", "hset", "set"} {
		b.Run(cmd+"/go-redis", func(b *testing.B) {
			p := uniq("bench-sink")
			defer delPrefix(cl, p)
			b.ResetTimer()
			for i := 0; i < b.N; i += 1000 {
				_, err := cl.Pipelined(ctx, func(pl goredis.Pipeliner) error {
					for j := i; j < min(i+1000, b.N); j++ {
						vals := []any{"amount", "12.5", "id", strconv.Itoa(j), "user", "u" + strconv.Itoa(j%50)}
						switch cmd {
						case "xadd":
							pl.XAdd(ctx, &goredis.XAddArgs{Stream: p + ":stream", Values: vals})
						case "hset":
							pl.HSet(ctx, p+":k:"+strconv.Itoa(j), vals...)
						case "set":
							pl.Set(ctx, p+":k:"+strconv.Itoa(j), `{"amount":12.5,"id":`+strconv.Itoa(j)+`,"user":"u`+strconv.Itoa(j%50)+`"}`, 0)
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
