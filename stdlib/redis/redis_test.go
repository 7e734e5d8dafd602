package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/internal/testkit"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	_ "pipe.dev/pipe/stdlib/core" // generate, file
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// testAddr is the test server: PIPE_REDIS_ADDR or 127.0.0.1:6379.
func testAddr() string { return testkit.Env("PIPE_REDIS_ADDR", "127.0.0.1:6379") }

// newClient connects to the test server; a missing server skips the
// test, or fails it when CI=true.
func newClient(t testing.TB) *goredis.Client {
	t.Helper()
	return clientAt(t, testAddr())
}

func clientAt(t testing.TB, addr string) *goredis.Client {
	t.Helper()
	cl := goredis.NewClient(&goredis.Options{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := cl.Ping(ctx).Err(); err != nil {
		cl.Close()
		testkit.Missing(t, "redis (PIPE_REDIS_ADDR or 127.0.0.1:6379) is not reachable: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func uniq(name string) string {
	var b [4]byte
	rand.Read(b[:])
	return "pipetest:" + name + ":" + hex.EncodeToString(b[:])
}

// config is the Config of a one-task stage of spec, checked as the
// executor checks it.
func config(t testing.TB, spec *stdlib.Spec, stage string, attrs map[string]any, exprs ...string) stdlib.Config {
	t.Helper()
	a := map[string]any{"addr": testAddr(), "retry_timeout": "2s"}
	for k, v := range attrs {
		a[k] = v
	}
	vals, err := spec.Values(a)
	if err != nil {
		t.Fatalf("stage %q: %v", stage, err)
	}
	if errs := spec.Check(vals); len(errs) > 0 {
		t.Fatalf("stage %q: %v", stage, errs)
	}
	return stdlib.Config{Pipeline: "test", Stage: stage, Attrs: vals, Tasks: 1, Delivery: stdlib.AtLeastOnce, Exprs: exprs}
}

func addEntries(t testing.TB, cl *goredis.Client, stream string, from, to int) []string {
	t.Helper()
	var ids []string
	for i := from; i < to; i++ {
		id, err := cl.XAdd(t.Context(), &goredis.XAddArgs{Stream: stream, Values: []any{"n", strconv.Itoa(i), "name", "e" + strconv.Itoa(i)}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func openSource(t testing.TB, cfg stdlib.Config, resume stdlib.Resumer) *source {
	t.Helper()
	return stdlibtest.OpenSource[*source](t, resume)(newSource(cfg))
}

// readN reads until n records came (or fails after a while).
func readN(t testing.TB, s *source, n int) []stdlib.Record {
	return stdlibtest.ReadExactly(t, s, n, 10*time.Second)
}

func pendingCount(t testing.TB, cl *goredis.Client, stream, group string) int64 {
	t.Helper()
	p, err := cl.XPending(t.Context(), stream, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

// TestSourceAcksAfterCommit: entries read stay pending until Commit
// covers them; a restart before that reads them again, and a restart
// resumed after some skips (and acknowledges) those.
func TestSourceAcksAfterCommit(t *testing.T) {
	cl := newClient(t)
	stream, group := uniq("src"), "g"
	t.Cleanup(func() { cl.Del(context.Background(), stream) })
	ids := addEntries(t, cl, stream, 0, 10)
	cfg := config(t, SourceSpec, "in", map[string]any{"stream": stream, "group": group})
	s := openSource(t, cfg, nil)
	recs := readN(t, s, 10)
	for i, r := range recs {
		if got := stdlib.StreamEntryID(r.Pos.Offset); got != ids[i] {
			t.Fatalf("record %d: offset %d is entry %s, want %s", i, r.Pos.Offset, got, ids[i])
		}
		m := r.Value.(map[string]any)
		if m["n"] != strconv.Itoa(i) || r.Pos.Partition != stream || r.Err != nil {
			t.Fatalf("record %d: %+v", i, r)
		}
		meta := stdlib.Meta(&r)
		if meta["stream"] != stream || meta["entry_id"] != ids[i] || meta["fields"].(map[string]any)["name"] != "e"+strconv.Itoa(i) {
			t.Fatalf("record %d meta: %v", i, meta)
		}
	}
	if n := pendingCount(t, cl, stream, group); n != 10 {
		t.Fatalf("%d pending before the commit, want 10", n)
	}
	if err := s.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: stream, Offset: recs[3].Pos.Offset}}); err != nil {
		t.Fatal(err)
	}
	if n := pendingCount(t, cl, stream, group); n != 6 {
		t.Fatalf("%d pending after committing 4, want 6", n)
	}
	added := addEntries(t, cl, stream, 100, 102)
	s.Commit(t.Context(), []stdlib.Position{{Source: "in", Partition: stream, Offset: recs[4].Pos.Offset}})
	groups := cl.XInfoGroups(t.Context(), stream).Val()
	for _, g := range groups {
		if strings.HasPrefix(g.Name, identityPrefix) && g.LastDeliveredID != cl.XInfoStream(t.Context(), stream).Val().LastGeneratedID {
			t.Fatalf("identity group at %s after a commit, not at the stream's end", g.LastDeliveredID)
		}
	}
	cl.XDel(t.Context(), stream, added...) // not read below
	s.Close(t.Context())

	// A restart (same consumer) reads the 5 pending entries again.
	s2 := openSource(t, cfg, nil)
	again := readN(t, s2, 5)
	if again[0].Pos.Offset != recs[5].Pos.Offset {
		t.Fatalf("restart read %s first, want %s", stdlib.StreamEntryID(again[0].Pos.Offset), ids[5])
	}
	s2.Close(t.Context())

	// Resumed after entry 6, the next restart skips 5 and 6 and acks them.
	s3 := openSource(t, cfg, stdlib.ResumeMap{stream: recs[6].Pos.Offset})
	addEntries(t, cl, stream, 10, 11)
	rest := readN(t, s3, 4)
	if rest[0].Pos.Offset != recs[7].Pos.Offset || rest[3].Value.(map[string]any)["n"] != "10" {
		t.Fatalf("resumed read %v", rest)
	}
	if n := pendingCount(t, cl, stream, group); n != 4 {
		t.Fatalf("%d pending, want 4 (7, 8, 9, 10)", n)
	}
}

// TestSourceClaimsIdlePending: the pending entries of a consumer that
// died are claimed by the source when it opens, once idle for claim_idle.
func TestSourceClaimsIdlePending(t *testing.T) {
	cl := newClient(t)
	stream, group := uniq("claim"), "g"
	t.Cleanup(func() { cl.Del(context.Background(), stream) })
	addEntries(t, cl, stream, 0, 5)
	if err := cl.XGroupCreate(t.Context(), stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The dead consumer read 3 entries and never acknowledged them.
	if _, err := cl.XReadGroup(t.Context(), &goredis.XReadGroupArgs{Group: group, Consumer: "dead", Streams: []string{stream, ">"}, Count: 3, Block: -1}).Result(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	s := openSource(t, config(t, SourceSpec, "in", map[string]any{"stream": stream, "group": group, "claim_idle": "20ms"}), nil)
	recs := readN(t, s, 5)
	for i, r := range recs {
		if r.Value.(map[string]any)["n"] != strconv.Itoa(i) {
			t.Fatalf("record %d is %v", i, r.Value)
		}
	}
	// Without claiming, another source gets only new entries.
	stream2 := uniq("noclaim")
	t.Cleanup(func() { cl.Del(context.Background(), stream2) })
	addEntries(t, cl, stream2, 0, 5)
	cl.XGroupCreate(t.Context(), stream2, group, "0")
	cl.XReadGroup(t.Context(), &goredis.XReadGroupArgs{Group: group, Consumer: "dead", Streams: []string{stream2, ">"}, Count: 3, Block: -1})
	s2 := openSource(t, config(t, SourceSpec, "in", map[string]any{"stream": stream2, "group": group, "claim_idle": "1h"}), nil)
	if got := readN(t, s2, 2); got[0].Value.(map[string]any)["n"] != "3" {
		t.Fatalf("unclaimed source read %v first", got[0].Value)
	}
}

type identityResumer struct{ ids map[string]string }

func (r *identityResumer) Resume(p, id string) (int64, bool) { r.ids[p] = id; return 0, false }

// TestSourceIdentity: a stream keeps its identity when trimmed and gets
// another when deleted and made again.
func TestSourceIdentity(t *testing.T) {
	cl := newClient(t)
	stream := uniq("ident")
	t.Cleanup(func() { cl.Del(context.Background(), stream) })
	addEntries(t, cl, stream, 0, 5)
	cfg := config(t, SourceSpec, "in", map[string]any{"stream": stream, "group": "g"})
	ident := func() string {
		r := &identityResumer{ids: map[string]string{}}
		s := openSource(t, cfg, r)
		s.Close(t.Context())
		return r.ids[stream]
	}
	first := ident()
	if !strings.HasPrefix(first, identityPrefix) {
		t.Fatalf("identity %q", first)
	}
	cl.XTrimMaxLen(t.Context(), stream, 1)
	if got := ident(); got != first {
		t.Fatalf("trimmed stream's identity %q, was %q", got, first)
	}
	cl.Del(t.Context(), stream)
	addEntries(t, cl, stream, 0, 1)
	if got := ident(); got == first || got == "" {
		t.Fatalf("stream made again kept identity %q", got)
	}
}

// TestSourceSchemaFields: with a schema, fields are parsed as its types;
// one that does not parse is a record error, not a failed read.
func TestSourceSchemaFields(t *testing.T) {
	cl := newClient(t)
	stream := uniq("schema")
	t.Cleanup(func() { cl.Del(context.Background(), stream) })
	cl.XAdd(t.Context(), &goredis.XAddArgs{Stream: stream, Values: []any{"n", "7", "ok", "true"}})
	cl.XAdd(t.Context(), &goredis.XAddArgs{Stream: stream, Values: []any{"n", "x", "ok", "true"}})
	cl.XAdd(t.Context(), &goredis.XAddArgs{Stream: stream, Values: []any{"value", `{"n": 3, "ok": false}`}})
	schema := types.RecordOf(&types.Field{Name: "n", Type: types.IntType}, &types.Field{Name: "ok", Type: types.BoolType})
	cfg := config(t, SourceSpec, "in", map[string]any{"stream": stream, "group": "g"})
	cfg.Schema = schema
	recs := readN(t, openSource(t, cfg, nil), 3)
	if m := recs[0].Value.(map[string]any); m["n"] != int64(7) || m["ok"] != true || recs[0].Err != nil {
		t.Fatalf("record 0: %v %v", m, recs[0].Err)
	}
	if recs[1].Err == nil || recs[2].Err == nil {
		t.Fatalf("want decode errors, got %v and %v", recs[1].Err, recs[2].Err)
	}
	jcfg := config(t, SourceSpec, "in", map[string]any{"stream": stream, "group": "g2", "format": "json"})
	jcfg.Schema = schema
	j := readN(t, openSource(t, jcfg, nil), 3)
	if m, _ := j[2].Value.(map[string]any); j[2].Err != nil || m["n"] != int64(3) || j[0].Err == nil {
		t.Fatalf("json: %v %v / %v", j[2].Value, j[2].Err, j[0].Err)
	}
}

func rec(src, part string, off int64, v map[string]any, attrs ...any) stdlib.Record {
	return stdlib.Record{Value: v, Pos: stdlib.Position{Source: src, Partition: part, Offset: off}, Attrs: attrs}
}

func openSink(t testing.TB, cfg stdlib.Config) (*sink, []stdlib.Position) {
	t.Helper()
	return stdlibtest.OpenSink[*sink](t)(newSink(cfg))
}

// TestSinkCommands: set, hset and xadd write what they should, with a
// ttl; a key of another type rejects its record alone.
func TestSinkCommands(t *testing.T) {
	cl := newClient(t)
	p := uniq("sink")
	t.Cleanup(func() {
		keys, _ := cl.Keys(context.Background(), p+"*").Result()
		if len(keys) > 0 {
			cl.Del(context.Background(), keys...)
		}
	})
	cl.Set(t.Context(), p+":str", "x", 0)
	for _, delivery := range []stdlib.Delivery{stdlib.AtLeastOnce, stdlib.ExactlyOnce} {
		t.Run(string(delivery), func(t *testing.T) {
			d := p + ":" + string(delivery)
			batch := func() []stdlib.Record {
				return []stdlib.Record{
					rec("in", "a", 1, map[string]any{"id": int64(1), "v": "one", "f": 1.5, "n": nil}, d+":k1"),
					rec("in", "a", 2, map[string]any{"id": int64(2), "v": "two"}, p+":str"),
					rec("in", "a", 3, map[string]any{"id": int64(3), "v": "three", "l": []any{int64(1)}}, d+":k3"),
				}
			}
			for _, cmd := range []string{"set", "hset", "xadd"} {
				cfg := config(t, SinkSpec, "out", map[string]any{"command": cmd, "ttl": "1h", "positions_key": d + ":pos:" + cmd}, "key")
				cfg.Delivery = delivery
				s, _ := openSink(t, cfg)
				b := batch()
				for i := range b {
					if s := b[i].Attrs[0].(string); s != p+":str" {
						b[i].Attrs[0] = s + ":" + cmd
					}
				}
				err := s.Write(t.Context(), b)
				var re stdlib.RecordErrors
				switch {
				case cmd == "set" && err != nil:
					t.Fatalf("set: %v", err)
				case cmd != "set" && (!errors.As(err, &re) || len(re) != 1 || re[0].Index != 1 || !strings.Contains(re[0].Err.Error(), "WRONGTYPE")):
					t.Fatalf("%s: want record 1 rejected with WRONGTYPE, got %v", cmd, err)
				}
				if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "in", Partition: "a", Offset: 3, Identity: "i"}}}); err != nil {
					t.Fatal(err)
				}
				k1, k3 := d+":k1:"+cmd, d+":k3:"+cmd
				if ttl := cl.PTTL(t.Context(), k1).Val(); ttl < 59*time.Minute {
					t.Fatalf("%s: ttl of %s is %v", cmd, k1, ttl)
				}
				switch cmd {
				case "set":
					if got := cl.Get(t.Context(), k1).Val(); got != `{"f":1.5,"id":1,"n":null,"v":"one"}` {
						t.Fatalf("set wrote %s", got)
					}
				case "hset":
					got := cl.HGetAll(t.Context(), k3).Val()
					if fmt.Sprint(got) != "map[id:3 l:[1] v:three]" {
						t.Fatalf("hset wrote %v", got)
					}
				case "xadd":
					xs := cl.XRange(t.Context(), k1, "-", "+").Val()
					if len(xs) != 1 || fmt.Sprint(xs[0].Values) != "map[f:1.5 id:1 v:one]" {
						t.Fatalf("xadd wrote %v", xs)
					}
				}
				if delivery == stdlib.ExactlyOnce {
					// The positions are held, and a sink opened again gets them.
					_, held := openSink(t, cfg)
					if len(held) != 1 || held[0].Offset != 3 || held[0].Identity != "i" || held[0].Partition != "a" {
						t.Fatalf("held %v", held)
					}
				}
			}
		})
	}
}

// TestSinkExactlyOnceHoldsUntilCheckpoint: under exactly_once nothing is
// written before the checkpoint, and each chunk of a checkpoint writes
// its records with their positions.
func TestSinkExactlyOnceHoldsUntilCheckpoint(t *testing.T) {
	cl := newClient(t)
	stream, pos := uniq("eos"), uniq("pos")
	t.Cleanup(func() { cl.Del(context.Background(), stream, pos) })
	cfg := config(t, SinkSpec, "out", map[string]any{"command": "xadd", "key": stream, "positions_key": pos, "checkpoint_chunk": int64(3)})
	cfg.Delivery = stdlib.ExactlyOnce
	s, held := openSink(t, cfg)
	if len(held) != 0 {
		t.Fatalf("held %v", held)
	}
	var b []stdlib.Record
	for i := range 7 {
		b = append(b, rec("in", "p", int64(i), map[string]any{"i": int64(i)}))
	}
	if err := s.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if n := cl.XLen(t.Context(), stream).Val(); n != 0 {
		t.Fatalf("%d entries before the checkpoint", n)
	}
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 1, Positions: []stdlib.Position{{Source: "in", Partition: "p", Offset: 9}}}); err != nil {
		t.Fatal(err)
	}
	if n := cl.XLen(t.Context(), stream).Val(); n != 7 {
		t.Fatalf("%d entries after the checkpoint, want 7", n)
	}
	if got := cl.HGet(t.Context(), pos, "out"+sep+"in"+sep+"p").Val(); got != "9 " {
		t.Fatalf("position %q, want \"9 \"", got)
	}
	// A key changed to another type between Write and Checkpoint: the
	// script writes nothing of the chunk and the checkpoint fails.
	s.Write(t.Context(), []stdlib.Record{rec("in", "p", 10, map[string]any{"i": int64(10)})})
	cl.Del(t.Context(), stream)
	cl.Set(t.Context(), stream, "now a string", 0)
	if err := s.Checkpoint(t.Context(), stdlib.Checkpoint{ID: 2, Positions: []stdlib.Position{{Source: "in", Partition: "p", Offset: 10}}}); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("checkpoint: %v", err)
	}
	if got := cl.HGet(t.Context(), pos, "out"+sep+"in"+sep+"p").Val(); got != "9 " {
		t.Fatalf("position %q after a failed script, want \"9 \"", got)
	}
}

// TestPositionStore: pipe offsets reads and sets what the hash holds.
func TestPositionStore(t *testing.T) {
	cl := newClient(t)
	pos := uniq("pos")
	t.Cleanup(func() { cl.Del(context.Background(), pos) })
	cfg := config(t, SinkSpec, "out", map[string]any{"key": "k", "positions_key": pos})
	cfg.Delivery = stdlib.ExactlyOnce
	s, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.HSet(t.Context(), pos, "out"+sep+"in"+sep+"a", "5 x", "out"+sep+"in"+sep+"b", "6 x", "other"+sep+"in"+sep+"a", "1 ")
	got, err := s.StoredPositions(t.Context())
	if err != nil || len(got) != 2 {
		t.Fatalf("stored %v %v", got, err)
	}
	if err := s.SetPositions(t.Context(), "in", []string{"a"}, []stdlib.Position{{Partition: "a", Offset: 2, Identity: "y"}}); err != nil {
		t.Fatal(err)
	}
	all := cl.HGetAll(t.Context(), pos).Val()
	if all["out"+sep+"in"+sep+"a"] != "2 y" || all["out"+sep+"in"+sep+"b"] != "6 x" || all["other"+sep+"in"+sep+"a"] != "1 " {
		t.Fatalf("after set: %q", all)
	}
	if err := s.SetPositions(t.Context(), "in", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.StoredPositions(t.Context()); len(got) != 0 {
		t.Fatalf("after reset: %v", got)
	}
}

// TestCredentialsNotInErrors: a wrong password fails the stage without
// showing it; the ACL user and password authenticate.
func TestCredentialsNotInErrors(t *testing.T) {
	cl := newClient(t)
	user, pass := uniq("user"), "s3cr3t-"+uniq("pw")
	if err := cl.Do(t.Context(), "ACL", "SETUSER", user, "on", ">"+pass, "~*", "+@all").Err(); err != nil {
		t.Skipf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { cl.Do(context.Background(), "ACL", "DELUSER", user) })
	cfg := config(t, SinkSpec, "out", map[string]any{"key": uniq("k"), "username": user, "password": "wrong-" + pass, "retry_timeout": "0s"})
	s, err := newSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Open(t.Context())
	if err == nil || strings.Contains(err.Error(), pass) {
		t.Fatalf("open with a wrong password: %v", err)
	}
	cfg = config(t, SinkSpec, "out", map[string]any{"key": uniq("k"), "username": user, "password": pass})
	key := cfg.String("key")
	t.Cleanup(func() { cl.Del(context.Background(), key) })
	good, _ := openSink(t, cfg)
	if err := good.Write(t.Context(), []stdlib.Record{rec("in", "p", 1, map[string]any{"a": "b"})}); err != nil {
		t.Fatal(err)
	}
	if cl.Get(t.Context(), key).Val() != `{"a":"b"}` {
		t.Fatal("the ACL user's write is missing")
	}
}

// TestCompilerChecks: what the compiler knows of a redis stage before it
// runs: a ttl needs a unit, a key expression must be a string, value and
// fields belong to their commands.
func TestCompilerChecks(t *testing.T) {
	const head = "pipeline p {\n  delivery = at_least_once\n}\nsource s: generate {\n  count = 1\n  fields = { id: \"seq\" }\n}\n"
	for _, tc := range []struct{ sink, want string }{
		{"sink o: redis {\n  key = \"k\"\n  ttl = 60\n}\ns -> o\n", "ttl"},
		{"sink o: redis {\n  key := 42\n}\ns -> o\n", "key"},
		{"sink o: redis {\n  command = hset\n  key = \"k\"\n  fields := \"f\"\n}\ns -> o\n", "fields"},
		{"sink o: redis {\n  command = hset\n  key = \"k\"\n  value := \"x\"\n}\ns -> o\n", "value applies to command = set only"},
		{"sink o: redis {\n  key = \"k\"\n  maxlen = 10\n}\ns -> o\n", "maxlen applies to command = xadd only"},
		{"sink o: redis {\n  key = \"k\"\n  ttl = 0s\n}\ns -> o\n", "ttl must be at least 1ms"},
	} {
		_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "t.pipe", []byte(head+tc.sink))
		if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.want) {
			t.Errorf("%s: want an error about %s, got %v", tc.sink, tc.want, diags)
		}
	}
	_, diags := compiler.Compile(&compiler.Config{Registry: stdlib.Default}, "t.pipe",
		[]byte(head+"sink o: redis {\n  command = hset\n  key := \"k:\" + string(id)\n  ttl = 90s\n}\ns -> o\n"))
	if diags.HasErrors() {
		t.Fatalf("a valid stage: %v", diags)
	}
}
