package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
)

func init() { stdlib.MustRegister(SinkSpec) }

// SinkSpec describes the redis sink.
var SinkSpec = &stdlib.Spec{
	Kind:     stdlib.SinkKind,
	Name:     "redis",
	Summary:  "write records to Redis keys (SET, HSET) or streams (XADD); exactly once with the positions kept in a hash written in the same script",
	Delivery: []stdlib.Delivery{stdlib.ExactlyOnce, stdlib.AtLeastOnce},
	Releases: true,
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "command", Type: stdlib.Enum("set", "hset", "xadd"), Default: stdlib.Ident("set"),
			Doc: "set: the key holds value; hset: the hash at key gets fields; xadd: the stream at key gets an entry of fields"},
		stdlib.Param{Name: "key", Type: stdlib.String, Required: true, Expr: true, Doc: "key (set, hset) or stream (xadd) to write; key := expr per record"},
		stdlib.Param{Name: "value", Type: stdlib.AnyValue, Expr: true,
			Doc: "set: the value stored, value := expr (a string as it is, anything else as JSON); default: the record as JSON"},
		stdlib.Param{Name: "fields", Type: stdlib.MapOf(stdlib.String), Expr: true,
			Doc: "hset, xadd: the fields written, fields := expr; default: the record's top-level fields (strings as they are, others as JSON, nulls left out)"},
		stdlib.Param{Name: "ttl", Type: stdlib.Duration, Doc: "expire the key this long after each write (SET PX, PEXPIRE); default: never"},
		stdlib.Param{Name: "maxlen", Type: stdlib.Int, Doc: "xadd: trim the stream to about this many entries (MAXLEN ~)"},
		stdlib.Param{Name: "positions_key", Type: stdlib.String,
			Doc: "exactly_once: the hash holding the source positions the writes cover (default: pipe:positions:<pipeline>)"},
		stdlib.Param{Name: "checkpoint_chunk", Type: stdlib.Int, Default: int64(2000),
			Doc: "exactly_once: most records one script writes at a checkpoint (each script writes its records and their positions at once)"},
	),
	Check: checkSink,
	NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
		return newSink(cfg)
	},
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := checkConn(attrs)
	cmd, _ := attrs["command"].(stdlib.Ident)
	if d, ok := attrs["ttl"].(time.Duration); ok && d < time.Millisecond {
		errs = append(errs, stdlib.AttrError{Attr: "ttl", Message: "ttl must be at least 1ms"})
	}
	if n, ok := attrs["maxlen"].(int64); ok {
		if n < 1 {
			errs = append(errs, stdlib.AttrError{Attr: "maxlen", Message: "maxlen must be at least 1"})
		}
		if cmd != "" && cmd != "xadd" {
			errs = append(errs, stdlib.AttrError{Attr: "maxlen", Message: "maxlen applies to command = xadd only"})
		}
	}
	if _, ok := attrs["value"]; ok && cmd != "" && cmd != "set" {
		errs = append(errs, stdlib.AttrError{Attr: "value", Message: "value applies to command = set only (hset and xadd write fields)"})
	}
	if _, ok := attrs["fields"]; ok && cmd == "set" {
		errs = append(errs, stdlib.AttrError{Attr: "fields", Message: "fields applies to command = hset or xadd only (set writes value)"})
	}
	if n, ok := attrs["checkpoint_chunk"].(int64); ok && n < 1 {
		errs = append(errs, stdlib.AttrError{Attr: "checkpoint_chunk", Message: "checkpoint_chunk must be at least 1"})
	}
	return errs
}

// pending is a command an exactly-once sink holds until the checkpoint,
// with the position of its record.
type pending struct {
	args []any
	pos  stdlib.Position
}

type sink struct {
	cfg      stdlib.Config
	conn     *conn
	cl       *goredis.Client
	command  string
	key      string
	value    any
	fields   map[string]any
	ttl      time.Duration
	maxlen   int64
	keyAt    int
	valueAt  int
	fieldsAt int
	json     codec.Codec
	exactly  bool
	posKey   string
	sinkID   string
	chunk    int
	// exactly_once: the commands written since the last checkpoint, and
	// the keys found to be of the type the command writes.
	buf  []pending
	good map[string]bool
}

func newSink(cfg stdlib.Config) (*sink, error) {
	cn, err := newConn(cfg, "redis sink "+cfg.Stage)
	if err != nil {
		return nil, err
	}
	s := &sink{
		cfg:      cfg,
		conn:     cn,
		command:  cfg.String("command"),
		key:      cfg.String("key"),
		value:    cfg.Attrs["value"],
		ttl:      cfg.Duration("ttl"),
		maxlen:   cfg.Int("maxlen"),
		keyAt:    cfg.ExprIndex("key"),
		valueAt:  cfg.ExprIndex("value"),
		fieldsAt: cfg.ExprIndex("fields"),
		exactly:  cfg.Delivery == stdlib.ExactlyOnce,
		posKey:   cfg.String("positions_key"),
		chunk:    int(cfg.Int("checkpoint_chunk")),
		good:     map[string]bool{},
	}
	s.fields, _ = cfg.Attrs["fields"].(map[string]any)
	if s.posKey == "" {
		s.posKey = "pipe:positions:" + cfg.Pipeline
	}
	s.sinkID = cfg.Stage
	if cfg.Tasks > 1 {
		s.sinkID += "/" + strconv.Itoa(cfg.Task)
	}
	if s.json, err = codec.New("json", nil, codec.Options{}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sink) errorf(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

func (s *sink) Open(ctx context.Context) ([]stdlib.Position, error) {
	s.cl = s.conn.client()
	if !s.exactly {
		if err := s.conn.do(ctx, &s.cl, func() error { return s.cl.Ping(ctx).Err() }); err != nil {
			return nil, s.errorf("%w", err)
		}
		return nil, nil
	}
	held, err := s.held(ctx, &s.cl)
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	return held[s.sinkID], nil
}

// held reads the positions hash: per sink task, the positions it holds.
func (s *sink) held(ctx context.Context, cl **goredis.Client) (map[string][]stdlib.Position, error) {
	var all map[string]string
	err := s.conn.do(ctx, cl, func() (err error) {
		all, err = (*cl).HGetAll(ctx, s.posKey).Result()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read positions %q: %w", s.posKey, err)
	}
	out := map[string][]stdlib.Position{}
	for f, v := range all {
		id, p, ok := parsePosition(f, v)
		if ok {
			out[id] = append(out[id], p)
		}
	}
	return out, nil
}

// A position is the hash field "<sink task>\x1f<source>\x1f<partition>"
// with the value "<offset> <identity>"; the field "<sink task>\x1f" holds
// the token of the last script that wrote for the task.
const sep = "\x1f"

func positionField(sinkID string, p stdlib.Position) string {
	return sinkID + sep + p.Source + sep + p.Partition
}

func positionValue(p stdlib.Position) string {
	return strconv.FormatInt(p.Offset, 10) + " " + p.Identity
}

func parsePosition(field, value string) (string, stdlib.Position, bool) {
	parts := strings.Split(field, sep)
	off, ident, _ := strings.Cut(value, " ")
	o, err := strconv.ParseInt(off, 10, 64)
	if len(parts) != 3 || err != nil {
		return "", stdlib.Position{}, false
	}
	return parts[0], stdlib.Position{Source: parts[1], Partition: parts[2], Offset: o, Identity: ident}, true
}

// ofStage reports whether sink task id is one of the stage's.
func (s *sink) ofStage(id string) bool {
	return id == s.cfg.Stage || strings.HasPrefix(id, s.cfg.Stage+"/")
}

// args builds the command of record r, or says why the record cannot be
// written.
func (s *sink) args(r *stdlib.Record) ([]any, error) {
	key := s.key
	if v, ok := r.Attr(s.keyAt); ok {
		k, _ := v.(string)
		if v == nil || k == "" {
			return nil, errors.New("key is null or empty")
		}
		key = k
	}
	if key == "" {
		return nil, errors.New("key is empty")
	}
	if s.command == "set" {
		var val string
		if v, ok := r.Attr(s.valueAt); ok || s.value != nil {
			if !ok {
				v = s.value
			}
			if v == nil {
				return nil, errors.New("value is null")
			}
			t, err := text(v)
			if err != nil {
				return nil, fmt.Errorf("value: %w", err)
			}
			val = t
		} else {
			b, err := s.json.Append(nil, recordMap(r))
			if err != nil {
				return nil, err
			}
			val = string(b)
		}
		a := []any{"SET", key, val}
		if s.ttl > 0 {
			a = append(a, "PX", s.ttl.Milliseconds())
		}
		return a, nil
	}
	fields := s.fields
	if v, ok := r.Attr(s.fieldsAt); ok {
		fields, _ = v.(map[string]any)
	}
	if fields == nil {
		fields = recordMap(r)
	}
	var a []any
	if s.command == "hset" {
		a = []any{"HSET", key}
	} else {
		a = []any{"XADD", key}
		if s.maxlen > 0 {
			a = append(a, "MAXLEN", "~", s.maxlen)
		}
		a = append(a, "*")
	}
	head := len(a)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		v := fields[k]
		if v == nil {
			continue
		}
		t, err := text(v)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
		a = append(a, k, t)
	}
	if len(a) == head {
		return nil, errors.New("no fields to write")
	}
	return a, nil
}

// recordMap is the record's value as a map.
func recordMap(r *stdlib.Record) map[string]any {
	if m, ok := stdlib.Materialize(r.Value).(map[string]any); ok {
		return m
	}
	return map[string]any{"value": r.Value}
}

// text is how a value is written: a string or bytes as they are, a number,
// bool or timestamp as its text, anything else as JSON.
func text(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("%v is not a number Redis clients read back", x)
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	}
	b, err := json.Marshal(stdlib.Materialize(v))
	return string(b), err
}

// expire is the command setting a hash's or stream's ttl.
func (s *sink) expire(key any) []any { return []any{"PEXPIRE", key, s.ttl.Milliseconds()} }

func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	var rejected stdlib.RecordErrors
	cmds := make([][]any, len(batch))
	for i := range batch {
		a, err := s.args(&batch[i])
		if err != nil {
			rejected = append(rejected, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		cmds[i] = a
	}
	var err error
	if s.exactly {
		err = s.hold(ctx, batch, cmds, &rejected)
	} else {
		err = s.send(ctx, cmds, &rejected)
	}
	if err != nil {
		return s.errorf("%w", err)
	}
	if len(rejected) > 0 {
		slices.SortFunc(rejected, func(a, b stdlib.RecordError) int { return a.Index - b.Index })
		return rejected
	}
	return nil
}

// send writes the commands at once (at_least_once): a pipeline of them,
// sent again whole after a lost connection. A command the server refuses
// rejects its record.
func (s *sink) send(ctx context.Context, cmds [][]any, rejected *stdlib.RecordErrors) error {
	var res []goredis.Cmder
	err := s.conn.do(ctx, &s.cl, func() error {
		var err error
		res, err = s.cl.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, a := range cmds {
				if a == nil {
					continue
				}
				p.Do(ctx, a...)
				if s.ttl > 0 && s.command != "set" {
					p.Do(ctx, s.expire(a[1])...)
				}
			}
			return nil
		})
		if err != nil && !transient(err) && !recordError(err) {
			return err
		}
		for _, c := range res {
			if transient(c.Err()) {
				return c.Err()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	j := 0
	for i, a := range cmds {
		if a == nil {
			continue
		}
		n := 1
		if s.ttl > 0 && s.command != "set" {
			n = 2
		}
		for _, c := range res[j : j+n] {
			if cerr := c.Err(); cerr != nil {
				if !recordError(cerr) {
					return cerr
				}
				*rejected = append(*rejected, stdlib.RecordError{Index: i, Err: cerr})
				break
			}
		}
		j += n
	}
	return nil
}

// hold keeps the commands until the checkpoint (exactly_once), rejecting
// those whose key holds a value of another type than the command writes.
func (s *sink) hold(ctx context.Context, batch []stdlib.Record, cmds [][]any, rejected *stdlib.RecordErrors) error {
	if s.command != "set" {
		var unknown []string
		for _, a := range cmds {
			if a != nil && !s.good[a[1].(string)] {
				unknown = append(unknown, a[1].(string))
			}
		}
		slices.Sort(unknown)
		unknown = slices.Compact(unknown)
		if len(unknown) > 0 {
			var types []*goredis.StatusCmd
			err := s.conn.do(ctx, &s.cl, func() error {
				types = types[:0]
				_, err := s.cl.Pipelined(ctx, func(p goredis.Pipeliner) error {
					for _, k := range unknown {
						types = append(types, p.Type(ctx, k))
					}
					return nil
				})
				return err
			})
			if err != nil {
				return err
			}
			want := map[string]string{"hset": "hash", "xadd": "stream"}[s.command]
			bad := map[string]string{}
			if len(s.good) > 100000 {
				clear(s.good)
			}
			for i, k := range unknown {
				if t := types[i].Val(); t == "none" || t == want {
					s.good[k] = true
				} else {
					bad[k] = t
				}
			}
			for i, a := range cmds {
				if a == nil {
					continue
				}
				if t, ok := bad[a[1].(string)]; ok {
					*rejected = append(*rejected, stdlib.RecordError{Index: i,
						Err: fmt.Errorf("WRONGTYPE key %q holds a %s, not a %s", a[1], t, want)})
					cmds[i] = nil
				}
			}
		}
	}
	for i, a := range cmds {
		if a != nil {
			s.buf = append(s.buf, pending{args: a, pos: batch[i].Pos})
		}
	}
	return nil
}

// commitScript writes a chunk of commands and the positions they reach in
// one step: Redis runs a script whole, with no other command in between,
// so the keys never hold a record without the hash holding its position.
// It checks every key's type first and writes nothing when one is wrong.
//
// KEYS: the positions hash, then the keys written. ARGV: the token field
// and token, the number of position field/value pairs and the pairs, then
// each command as its argument count and arguments.
var commitScript = goredis.NewScript(`
local i = 3
local np = tonumber(ARGV[i]); i = i + 1
local pos = {}
for j = 1, np * 2 do pos[j] = ARGV[i]; i = i + 1 end
local want = {HSET = 'hash', XADD = 'stream'}
local cmds = {}
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local c = {}
  for j = 1, n do c[j] = ARGV[i + j] end
  i = i + n + 1
  local w = want[c[1]]
  if w then
    local t = redis.call('TYPE', c[2]).ok
    if t ~= 'none' and t ~= w then
      return redis.error_reply('WRONGTYPE key ' .. c[2] .. ' holds a ' .. t .. ', not a ' .. w)
    end
  end
  cmds[#cmds + 1] = c
end
for _, c in ipairs(cmds) do redis.call(unpack(c)) end
if np > 0 then redis.call('HSET', KEYS[1], unpack(pos)) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return #cmds
`)

func (s *sink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error {
	if !s.exactly {
		return nil
	}
	for len(s.buf) > 0 || cp.Positions != nil {
		n := min(len(s.buf), s.chunk)
		var ps []stdlib.Position
		if n == len(s.buf) {
			ps, cp.Positions = cp.Positions, nil
			if ps == nil {
				ps = []stdlib.Position{}
			}
		} else {
			ps = chunkPositions(s.buf[:n])
		}
		if err := s.commit(ctx, s.buf[:n], ps); err != nil {
			return s.errorf("checkpoint %d: %w", cp.ID, err)
		}
		clear(s.buf[:n])
		s.buf = s.buf[n:]
		if len(s.buf) == 0 {
			s.buf = nil
			break
		}
	}
	return nil
}

// chunkPositions returns the highest position of each partition in
// chunk: records of a partition come in order, so the chunk and the
// chunks before it hold every record up to it.
func chunkPositions(chunk []pending) []stdlib.Position {
	type part struct{ source, partition string }
	hi := map[part]stdlib.Position{}
	for _, p := range chunk {
		k := part{p.pos.Source, p.pos.Partition}
		if old, ok := hi[k]; !ok || p.pos.Offset > old.Offset {
			hi[k] = p.pos
		}
	}
	return slices.Collect(maps.Values(hi))
}

// commit runs commitScript for chunk and positions. After a lost
// connection it reads the token back: a script that ran is not run again.
func (s *sink) commit(ctx context.Context, chunk []pending, positions []stdlib.Position) error {
	tb := make([]byte, 12)
	rand.Read(tb)
	token := hex.EncodeToString(tb)
	tokenField := s.sinkID + sep
	keys := []string{s.posKey}
	seen := map[string]bool{}
	args := []any{tokenField, token, len(positions)}
	for _, p := range positions {
		args = append(args, positionField(s.sinkID, p), positionValue(p))
	}
	for _, c := range chunk {
		k := c.args[1].(string)
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
		args = append(args, len(c.args))
		args = append(args, c.args...)
		if s.ttl > 0 && s.command != "set" {
			e := s.expire(k)
			args = append(args, len(e))
			args = append(args, e...)
		}
	}
	b := s.conn.backoff()
	for {
		err := commitScript.Run(ctx, s.cl, keys, args...).Err()
		if err == nil {
			b.Reset()
		}
		if err == nil || !transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.conn.renew(&s.cl)
		// Did it run before the connection broke?
		for {
			got, gerr := s.cl.HGet(ctx, s.posKey, tokenField).Result()
			if gerr == nil && got == token {
				b.Reset()
				return nil
			}
			if gerr == nil || errors.Is(gerr, goredis.Nil) {
				break // it did not: run it again
			}
			if !transient(gerr) {
				return gerr
			}
			s.conn.renew(&s.cl)
			if werr := b.Wait(ctx, gerr); werr != nil {
				return werr
			}
		}
		if werr := b.Wait(ctx, err); werr != nil {
			return werr
		}
	}
}

func (s *sink) Close(context.Context) error {
	cl := s.cl
	s.cl = nil // a second Close has nothing to close
	if cl != nil {
		return cl.Close()
	}
	return nil
}

// StoredPositions implements stdlib.PositionStore.
func (s *sink) StoredPositions(ctx context.Context) ([]stdlib.Position, error) {
	cl := s.conn.client()
	defer func() { cl.Close() }()
	held, err := s.held(ctx, &cl)
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	var out []stdlib.Position
	for id, ps := range held {
		if s.ofStage(id) {
			out = append(out, ps...)
		}
	}
	return out, nil
}

// SetPositions implements stdlib.PositionStore: it replaces, for every task
// of the stage, what is held for the partitions of source in reset (all
// of them when reset is empty) with set.
func (s *sink) SetPositions(ctx context.Context, source string, reset []string, set []stdlib.Position) error {
	cl := s.conn.client()
	defer func() { cl.Close() }()
	held, err := s.held(ctx, &cl)
	if err != nil {
		return s.errorf("%w", err)
	}
	ids := map[string]bool{s.sinkID: true}
	var del []string
	for id, ps := range held {
		if !s.ofStage(id) {
			continue
		}
		ids[id] = true
		for _, p := range ps {
			if p.Source == source && (len(reset) == 0 || slices.Contains(reset, p.Partition)) {
				del = append(del, positionField(id, p))
			}
		}
	}
	err = s.conn.do(ctx, &cl, func() error {
		_, err := cl.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			if len(del) > 0 {
				p.HDel(ctx, s.posKey, del...)
			}
			for id := range ids {
				for _, q := range set {
					q.Source = source
					p.HSet(ctx, s.posKey, positionField(id, q), positionValue(q))
				}
			}
			return nil
		})
		return err
	})
	if err != nil {
		return s.errorf("set positions: %w", err)
	}
	return nil
}

var _ stdlib.PositionStore = (*sink)(nil)
