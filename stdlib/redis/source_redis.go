package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(SourceSpec) }

// SourceSpec describes the redis source.
var SourceSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "redis",
	Summary: "read Redis stream entries through a consumer group, acknowledged after each checkpoint",
	Schema:  true,
	Meta:    []stdlib.MetaField{stdlib.MetaOffset, stdlib.MetaStream, stdlib.MetaEntryID, stdlib.MetaStreamFields},
	Params: append(slices.Clone(connParams),
		stdlib.Param{Name: "stream", Type: stdlib.String, Doc: "stream key to read (or streams)"},
		stdlib.Param{Name: "streams", Type: stdlib.ListOf(stdlib.String), Doc: "stream keys to read (or stream); a stage's tasks share them out"},
		stdlib.Param{Name: "group", Type: stdlib.String, Required: true, Doc: "consumer group, created when missing (with the stream)"},
		stdlib.Param{Name: "consumer", Type: stdlib.String,
			Doc: "consumer name in the group (default: pipe-<stage>-<task>); keep it stable: a restart reads its pending entries again"},
		stdlib.Param{Name: "start", Type: stdlib.Enum("earliest", "latest"), Default: stdlib.Ident("earliest"),
			Doc: "where a group created by the source begins: the stream's first entry or its end"},
		stdlib.Param{Name: "format", Type: stdlib.Enum("fields", "json"), Default: stdlib.Ident("fields"),
			Doc: "fields: the entry's fields are the record (strings, or parsed as the schema's types); json: the field named by field holds the record as JSON"},
		stdlib.Param{Name: "field", Type: stdlib.String, Default: "value", Doc: "format = json: the field holding the JSON"},
		stdlib.Param{Name: "count", Type: stdlib.Int, Default: int64(1000), Doc: "most entries one read returns"},
		stdlib.Param{Name: "max_wait", Type: stdlib.Duration, Default: 250 * time.Millisecond, Doc: "longest a read blocks for new entries"},
		stdlib.Param{Name: "claim_idle", Type: stdlib.Duration, Default: time.Minute,
			Doc: "when the source opens, it claims (XAUTOCLAIM) the pending entries of other consumers of the group idle this long; 0 claims none"},
	),
	Check: checkSource,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newSource(cfg)
	},
}

func checkSource(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	_, one := attrs["stream"]
	_, many := attrs["streams"]
	switch {
	case one && many:
		errs = append(errs, stdlib.AttrError{Attr: "streams", Message: "set stream or streams, not both"})
	case !one && !many:
		errs = append(errs, stdlib.AttrError{Attr: "stream", Message: "stream or streams is required"})
	}
	if n, ok := attrs["count"].(int64); ok && n < 1 {
		errs = append(errs, stdlib.AttrError{Attr: "count", Message: "count must be at least 1"})
	}
	if d, ok := attrs["max_wait"].(time.Duration); ok && d < time.Millisecond {
		errs = append(errs, stdlib.AttrError{Attr: "max_wait", Message: "max_wait must be at least 1ms"})
	}
	if d, ok := attrs["claim_idle"].(time.Duration); ok && d < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "claim_idle", Message: "claim_idle must not be negative"})
	}
	if g, ok := attrs["group"].(string); ok && strings.HasPrefix(g, identityPrefix) {
		errs = append(errs, stdlib.AttrError{Attr: "group", Message: "group names starting with " + identityPrefix + " are the source's own"})
	}
	return append(errs, checkConn(attrs)...)
}

// identityPrefix begins the name of the consumer group that marks a
// stream's incarnation (see source.identity).
const identityPrefix = "pipe.identity."

// Offsets: a stream entry id "ms-seq" is the offset ms<<StreamSeqBits |
// seq, which grows as ids do. An id whose sequence needs more bits (ids
// chosen by a producer, not by the server) has no offset.
const (
	maxSeq = 1<<stdlib.StreamSeqBits - 1
	maxMS  = 1<<(63-stdlib.StreamSeqBits) - 1
)

// parseID returns the offset of entry id.
func parseID(id string) (int64, error) {
	ms, seq, ok := strings.Cut(id, "-")
	m, err1 := strconv.ParseInt(ms, 10, 64)
	n, err2 := strconv.ParseInt(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil || m < 0 || n < 0 {
		return 0, fmt.Errorf("entry id %q: not ms-seq", id)
	}
	if m > maxMS || n > maxSeq {
		return 0, fmt.Errorf("entry id %q is out of the range positions hold (milliseconds below 2^%d, sequence below 2^%d)", id, 63-stdlib.StreamSeqBits, stdlib.StreamSeqBits)
	}
	return m<<stdlib.StreamSeqBits | n, nil
}

// streamState is what the source knows of one stream it reads.
type streamState struct {
	key      string
	identity string
	// resume is the last offset durable downstream (skip and acknowledge
	// entries at or below it); -1 when none.
	resume int64
	// backlog is the id after which the consumer's own pending entries
	// are read next (they come first after a restart); "" once they are
	// all read and new entries (">") follow.
	backlog string
	// unacked holds the ids handed on and not acknowledged yet, in order.
	unacked []string
	offs    []int64
}

type source struct {
	cfg      stdlib.Config
	conn     *conn
	cl       *goredis.Client
	bo       *retry.Backoff
	group    string
	consumer string
	start    string
	count    int64
	maxWait  time.Duration
	claim    time.Duration
	json     codec.Codec // format = json
	field    string
	schema   *types.Type
	resume   stdlib.Resumer
	streams  []*streamState
	byKey    map[string]*streamState
	lag      stdlib.LagProbe[*goredis.Client]
}

func newSource(cfg stdlib.Config) (*source, error) {
	cn, err := newConn(cfg, "redis source "+cfg.Stage)
	if err != nil {
		return nil, err
	}
	s := &source{
		cfg:      cfg,
		conn:     cn,
		group:    cfg.String("group"),
		consumer: cfg.String("consumer"),
		start:    cfg.String("start"),
		count:    cfg.Int("count"),
		maxWait:  cfg.Duration("max_wait"),
		claim:    cfg.Duration("claim_idle"),
		field:    cfg.String("field"),
		schema:   cfg.Schema,
		byKey:    map[string]*streamState{},
	}
	if s.consumer == "" {
		s.consumer = fmt.Sprintf("pipe-%s-%d", cfg.Stage, cfg.Task)
	}
	var keys []string
	if k := cfg.String("stream"); k != "" {
		keys = append(keys, k)
	}
	keys = append(keys, cfg.Strings("streams")...)
	if len(keys) == 0 {
		return nil, errors.New("no stream")
	}
	tasks := max(cfg.Tasks, 1)
	for i, k := range keys {
		if i%tasks == cfg.Task && s.byKey[k] == nil {
			st := &streamState{key: k, resume: -1, backlog: "0"}
			s.streams = append(s.streams, st)
			s.byKey[k] = st
		}
	}
	s.lag = stdlib.LagProbe[*goredis.Client]{
		Open:  func(context.Context) (*goredis.Client, error) { return cn.client(), nil },
		Query: s.queryLag,
		Drop:  func(c *goredis.Client) { c.Close() },
	}
	if cfg.String("format") == "json" {
		if s.json, err = codec.New("json", cfg.Schema, codec.Options{}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *source) errorf(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

func (s *source) Open(ctx context.Context, resume stdlib.Resumer) error {
	if resume == nil {
		resume = stdlib.ResumeMap(nil)
	}
	s.resume = resume
	s.cl = s.conn.client()
	s.bo = s.conn.backoff()
	for _, st := range s.streams {
		if err := s.conn.do(ctx, &s.cl, func() error { return s.setUp(ctx, st) }); err != nil {
			return s.errorf("stream %q: %w", st.key, err)
		}
	}
	return nil
}

// setUp creates the group (and the stream) when missing, learns the
// stream's identity, resumes it and claims idle pending entries of other
// consumers, which are then read with the consumer's own.
func (s *source) setUp(ctx context.Context, st *streamState) error {
	start := "0"
	if s.start == "latest" {
		start = "$"
	}
	err := s.cl.XGroupCreateMkStream(ctx, st.key, s.group, start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group %q: %w", s.group, err)
	}
	if st.identity, err = s.identity(ctx, st.key); err != nil {
		return err
	}
	st.resume = -1
	if off, ok := s.resume.Resume(st.key, st.identity); ok {
		st.resume = off
	}
	st.backlog, st.unacked, st.offs = "0", nil, nil
	if s.claim <= 0 {
		return nil
	}
	cursor := "0-0"
	claimed := 0
	for {
		ids, next, err := s.cl.XAutoClaimJustID(ctx, &goredis.XAutoClaimArgs{
			Stream: st.key, Group: s.group, Consumer: s.consumer, MinIdle: s.claim, Start: cursor, Count: 1000,
		}).Result()
		if err != nil {
			return fmt.Errorf("claim pending entries: %w", err)
		}
		claimed += len(ids)
		if next == "0-0" || next == "" {
			break
		}
		cursor = next
	}
	if claimed > 0 {
		s.conn.log.Info("redis source claimed pending entries of other consumers",
			"stream", st.key, "group", s.group, "consumer", s.consumer, "entries", claimed)
	}
	return nil
}

// identity returns the identity of the stream at key: the name of a
// consumer group the source adds to it, pipe.identity.<random>, which
// lives as long as the stream does (Commit keeps it at the stream's end,
// so that it shows no lag). Trimming or deleting entries keeps
// it; deleting the stream (or losing it in a restart of a server without
// persistence) drops it, and the stream made again gets another. Of
// several such groups (sources that raced to add one) the first by name
// counts.
func (s *source) identity(ctx context.Context, key string) (string, error) {
	for range 2 {
		groups, err := s.cl.XInfoGroups(ctx, key).Result()
		if err != nil {
			return "", fmt.Errorf("list groups: %w", err)
		}
		var names []string
		for _, g := range groups {
			if strings.HasPrefix(g.Name, identityPrefix) {
				names = append(names, g.Name)
			}
		}
		if len(names) > 0 {
			sort.Strings(names)
			return names[0], nil
		}
		b := make([]byte, 8)
		rand.Read(b)
		err = s.cl.XGroupCreate(ctx, key, identityPrefix+hex.EncodeToString(b), "$").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return "", fmt.Errorf("mark the stream's identity: %w", err)
		}
	}
	return "", errors.New("mark the stream's identity: the marking group disappeared")
}

func (s *source) Read(ctx context.Context) ([]stdlib.Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		recs, err := s.read(ctx)
		switch {
		case err == nil:
			s.bo.Reset()
			return recs, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case isNoGroup(err):
			// The stream (and its groups) went away: deleted, or lost
			// with a server restarted without persistence. Its entries
			// are gone; the stream made again is another incarnation.
			s.conn.log.Warn("redis source: stream or group missing; creating them again", "error", err.Error())
			for _, st := range s.streams {
				if err := s.conn.do(ctx, &s.cl, func() error { return s.setUp(ctx, st) }); err != nil {
					return nil, s.errorf("stream %q: %w", st.key, err)
				}
			}
			continue
		case !transient(err):
			return nil, s.errorf("%w", err)
		}
		s.conn.renew(&s.cl)
		if werr := s.bo.Wait(ctx, err); werr != nil {
			return nil, s.errorf("%w", werr)
		}
	}
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// read reads once: the consumer's pending entries while there are, else
// new entries, blocking up to max_wait. An empty read returns an empty
// batch, so that the caller gets to commit between reads of an idle
// stream.
func (s *source) read(ctx context.Context) ([]stdlib.Record, error) {
	var keys, ids []string
	for _, st := range s.streams {
		if st.backlog != "" {
			keys, ids = append(keys, st.key), append(ids, st.backlog)
		}
	}
	block := time.Duration(-1)
	if len(keys) == 0 {
		for _, st := range s.streams {
			keys, ids = append(keys, st.key), append(ids, ">")
		}
		block = s.maxWait
		if dl, ok := ctx.Deadline(); ok {
			block = max(min(block, time.Until(dl)-50*time.Millisecond), time.Millisecond)
		}
	}
	res, err := s.cl.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group: s.group, Consumer: s.consumer, Streams: append(keys, ids...), Count: s.count, Block: block,
	}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []stdlib.Record
	for _, xs := range res {
		st := s.byKey[xs.Stream]
		if st == nil {
			continue
		}
		if st.backlog != "" && len(xs.Messages) == 0 {
			st.backlog = "" // the pending entries are all read
		}
		var stale []string // entries downstream already holds, or deleted ones
		for _, m := range xs.Messages {
			if st.backlog != "" {
				st.backlog = m.ID
			}
			off, err := parseID(m.ID)
			if err != nil {
				return out, fmt.Errorf("stream %q: %w", st.key, err)
			}
			if m.Values == nil || off <= st.resume {
				stale = append(stale, m.ID)
				continue
			}
			out = append(out, s.record(st, off, m))
			st.unacked = append(st.unacked, m.ID)
			st.offs = append(st.offs, off)
		}
		if len(stale) > 0 {
			if err := s.cl.XAck(ctx, st.key, s.group, stale...).Err(); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// record makes the record of entry m of stream st.
func (s *source) record(st *streamState, off int64, m goredis.XMessage) stdlib.Record {
	names := make([]string, 0, len(m.Values))
	for k := range m.Values {
		names = append(names, k)
	}
	sort.Strings(names)
	hs := make([]stdlib.Header, len(names))
	for i, k := range names {
		v, _ := m.Values[k].(string)
		hs[i] = stdlib.Header{Key: k, Value: []byte(v)}
	}
	r := stdlib.Record{
		Headers:   hs,
		Time:      time.UnixMilli(off >> stdlib.StreamSeqBits),
		Partition: -1,
		Pos:       stdlib.Position{Source: s.cfg.Stage, Partition: st.key, Offset: off},
	}
	var err error
	if s.json != nil {
		raw, _ := m.Values[s.field].(string)
		r.Raw = []byte(raw)
		if _, ok := m.Values[s.field]; !ok {
			err = fmt.Errorf("entry has no field %q", s.field)
		} else {
			r.Value, err = s.json.Decode(r.Raw)
		}
	} else {
		r.Value, err = s.fields(m.Values)
	}
	if err != nil {
		r.Err = fmt.Errorf("decode entry %s of stream %q: %w", m.ID, st.key, err)
	}
	return r
}

// fields makes the record of an entry's fields: strings, or with a
// schema, the schema's fields parsed from them (missing ones null).
func (s *source) fields(vals map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(vals))
	if s.schema == nil {
		for k, v := range vals {
			out[k] = v
		}
		return out, nil
	}
	for _, f := range s.schema.Fields {
		v, ok := vals[f.Name].(string)
		if !ok {
			if !f.Type.Optional {
				return nil, fmt.Errorf("field %q is missing", f.Name)
			}
			out[f.Name] = nil
			continue
		}
		x, err := codec.ParseText(v, f.Type, f.Name)
		if err != nil {
			return nil, err
		}
		out[f.Name] = x
	}
	return out, nil
}

// Commit acknowledges (XACK) the entries handed on up to positions: a
// checkpoint made them durable in every sink.
func (s *source) Commit(ctx context.Context, positions []stdlib.Position) error {
	for _, p := range positions {
		st := s.byKey[p.Partition]
		if st == nil || (p.Source != "" && p.Source != s.cfg.Stage) || (p.Identity != "" && p.Identity != st.identity) {
			continue
		}
		n, _ := slices.BinarySearch(st.offs, p.Offset+1)
		if n == 0 {
			continue
		}
		// A failed acknowledgement is made again with the next
		// checkpoint; the entries stay pending meanwhile, and a restart
		// reads them again and skips what downstream holds.
		if err := s.cl.XAck(ctx, st.key, s.group, st.unacked[:n]...).Err(); err != nil {
			if transient(err) || isNoGroup(err) {
				s.conn.log.Warn("redis source: entries not acknowledged; acknowledging them with the next checkpoint",
					"stream", st.key, "error", err.Error())
				continue
			}
			return s.errorf("acknowledge entries of %q: %w", st.key, err)
		}
		st.unacked = slices.Delete(st.unacked, 0, n)
		st.offs = slices.Delete(st.offs, 0, n)
		// The identity group reads nothing: keep it at the stream's end,
		// so that it shows no lag to whoever watches the groups.
		if err := s.cl.XGroupSetID(ctx, st.key, st.identity, "$").Err(); err != nil {
			s.conn.log.Debug("redis source: identity group not moved to the end", "stream", st.key, "error", err.Error())
		}
	}
	return nil
}

// Lag implements stdlib.Lagger: per stream, the entries the group has not
// been handed yet (the lag XINFO GROUPS reports, Redis 7.0 and later). A
// stream whose lag Redis cannot tell (entries deleted from its middle) is
// left out.
func (s *source) Lag(ctx context.Context) []stdlib.Lag { return s.lag.Lag(ctx) }

func (s *source) queryLag(ctx context.Context, cl *goredis.Client) ([]stdlib.Lag, error) {
	var lags []stdlib.Lag
	for _, st := range s.streams {
		groups, err := cl.XInfoGroups(ctx, st.key).Result()
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			if g.Name == s.group && g.Lag >= 0 {
				lags = append(lags, stdlib.Lag{Partition: st.key, Behind: g.Lag, Unit: "records"})
			}
		}
	}
	return lags, nil
}

var _ stdlib.Lagger = (*source)(nil)

func (s *source) Close(context.Context) error {
	s.lag.Close()
	cl := s.cl
	s.cl = nil // a second Close has nothing to close
	if cl != nil {
		return cl.Close()
	}
	return nil
}
