package core

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/fn"
	"pipe.dev/pipe/stdlib/retry"
)

func init() { stdlib.MustRegister(GenerateSpec) }

// GenerateSpec is the generate source: synthetic records from a template.
var GenerateSpec = &stdlib.Spec{
	Kind:    stdlib.SourceKind,
	Name:    "generate",
	Summary: "synthetic records from a template of generators (deterministic for a seed)",
	Params: []stdlib.Param{
		{Name: "count", Type: stdlib.Int, Default: int64(0), Doc: "records to generate over all tasks; 0 generates without end"},
		{Name: "rate", Type: stdlib.Float, Default: 0.0, Doc: "records per second over all tasks; 0 is as fast as possible"},
		{Name: "seed", Type: stdlib.Int, Default: int64(0), Doc: "seed of the random generators: the same seed gives the same records"},
		batchParam,
		{Name: "fields", Type: stdlib.MapOf(stdlib.AnyValue), Required: true, Doc: generatorDoc},
	},
	Bounded: false,
	Meta:    []stdlib.MetaField{stdlib.MetaOffset},
	Output:  generateOutput,
	Check:   generateCheck,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) {
		return newGenerate(cfg)
	},

	// A template is checked when the stage starts: no record fails alone.
	NoRecordErrors: true,
}

const generatorDoc = "the record template { field = generator or literal, ... }; record number n counts from 0 over all tasks. " +
	"Generators: seq(start = 1, step = 1) int, start + n*step; " +
	"pick(list) an item of the list at random; " +
	"random_int(min, max) int in [min, max]; " +
	"random_float(min, max, decimals = 2) float in [min, max), rounded down; " +
	"random_bool() bool; " +
	"timestamp(start = \"2024-01-01T00:00:00Z\", step = 1s) timestamp, start + n*step; " +
	"now() timestamp, the wall clock (not deterministic); " +
	"uuid() string, a random version 4 UUID; " +
	"format(pattern, args...) string, fmt-style, each arg a generator or literal: format(\"u%d\", random_int(1, 100)). " +
	"Literals (strings, numbers, bools) are constant fields. Random values depend only on seed, field and n, so a restart regenerates the same records; " +
	"the output type's fields are in name order"

// genFunc produces a field's value for record number n (over all tasks).
type genFunc func(n uint64, a *codec.Arena) any

// generator describes a compiled field generator.
type generator struct {
	fn  genFunc
	typ *types.Type
}

// compileGenerator compiles a field's value; salt separates random streams.
func compileGenerator(v any, seed, salt uint64) (generator, error) {
	call, ok := v.(*stdlib.Call)
	if !ok {
		switch v := v.(type) {
		case string, int64, float64, bool:
			c := v
			return generator{fn: func(uint64, *codec.Arena) any { return c }, typ: literalType(v)}, nil
		case stdlib.Ident:
			var c any = string(v)
			return generator{fn: func(uint64, *codec.Arena) any { return c }, typ: types.StringType}, nil
		case nil:
			return generator{fn: func(uint64, *codec.Arena) any { return nil }, typ: types.AnyType.WithOptional(true)}, nil
		}
		return generator{}, fmt.Errorf("want a generator call or a literal, not %T", v)
	}
	a := args{call: call}
	key := seed*0x9E3779B97F4A7C15 ^ salt*0xC2B2AE3D27D4EB4F
	var g generator
	switch call.Name {
	case "seq":
		start, step := a.int("start", 0, 1), a.int("step", 1, 1)
		g = generator{fn: func(n uint64, a *codec.Arena) any { return a.Int(start + int64(n)*step) }, typ: types.IntType}
	case "pick":
		l, ok := a.get("list", 0).([]any)
		if !ok || len(l) == 0 {
			return g, fmt.Errorf("pick wants a non-empty list")
		}
		items := slices.Clone(l)
		for i, it := range items {
			if id, ok := it.(stdlib.Ident); ok {
				items[i] = string(id)
			}
		}
		k := uint64(len(items))
		g = generator{fn: func(n uint64, a *codec.Arena) any { return items[mix(key, n)%k] }, typ: listItemType(items)}
	case "random_int":
		lo, hi := a.int("min", 0, 0), a.int("max", 1, 100)
		if hi < lo {
			return g, fmt.Errorf("random_int: max %d is below min %d", hi, lo)
		}
		span := uint64(hi-lo) + 1
		g = generator{fn: func(n uint64, a *codec.Arena) any {
			if span == 0 { // the full int64 range
				return a.Int(int64(mix(key, n)))
			}
			return a.Int(lo + int64(mix(key, n)%span))
		}, typ: types.IntType}
	case "random_float":
		lo, hi := a.float("min", 0, 0), a.float("max", 1, 1)
		if hi < lo {
			return g, fmt.Errorf("random_float: max %v is below min %v", hi, lo)
		}
		dec := a.int("decimals", 2, 2)
		if dec < 0 || dec > 15 {
			return g, fmt.Errorf("random_float: decimals must be between 0 and 15, not %d", dec)
		}
		scale := math.Pow(10, float64(dec))
		g = generator{fn: func(n uint64, a *codec.Arena) any {
			f := lo + (hi-lo)*float64(mix(key, n)>>11)/(1<<53)
			return a.Float(math.Floor(f*scale) / scale)
		}, typ: types.FloatType}
	case "random_bool":
		g = generator{fn: func(n uint64, a *codec.Arena) any { return mix(key, n)&1 == 1 }, typ: types.BoolType}
	case "timestamp":
		start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		if s, ok := a.get("start", 0).(string); ok {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return g, fmt.Errorf("timestamp: start %q is not an RFC 3339 timestamp", s)
			}
			start = t
		}
		step := time.Second
		if d, ok := a.get("step", 1).(time.Duration); ok {
			step = d
		}
		g = generator{fn: func(n uint64, a *codec.Arena) any { return a.Time(start.Add(time.Duration(n) * step)) }, typ: types.TimestampType}
	case "now":
		g = generator{fn: func(uint64, *codec.Arena) any { return time.Now().UTC() }, typ: types.TimestampType}
	case "uuid":
		g = generator{fn: func(n uint64, a *codec.Arena) any { return a.String(uuid4(mix(key, n), mix(key^0xA5A5A5A5, n))) }, typ: types.StringType}
	case "format":
		pattern, ok := a.get("pattern", 0).(string)
		if !ok {
			return g, fmt.Errorf("format wants a pattern string first")
		}
		var subs []genFunc
		for i := 1; ; i++ {
			v, ok := call.Args[strconv.Itoa(i)]
			if !ok {
				break
			}
			sg, err := compileGenerator(v, seed, salt*31+uint64(i))
			if err != nil {
				return g, fmt.Errorf("format argument %d: %v", i, err)
			}
			subs = append(subs, sg.fn)
		}
		pieces, fast := parseFormat(pattern, len(subs))
		g = generator{fn: func(n uint64, a *codec.Arena) any {
			if fast {
				var buf [64]byte
				if b, ok := appendFormat(buf[:0], pieces, subs, n, a); ok {
					return a.String(a.Text(b))
				}
			}
			vals := make([]any, len(subs))
			for i, f := range subs {
				vals[i] = f(n, a)
			}
			return a.String(fmt.Sprintf(pattern, vals...))
		}, typ: types.StringType}
	default:
		return g, fmt.Errorf("unknown generator %q (want seq, pick, random_int, random_float, random_bool, timestamp, now, uuid or format)", call.Name)
	}
	if err := a.err; err != nil {
		return generator{}, fmt.Errorf("%s: %v", call.Name, err)
	}
	return g, nil
}

// args reads a call's arguments by name or position.
type args struct {
	call *stdlib.Call
	err  error
}

func (a *args) get(name string, pos int) any {
	if v, ok := a.call.Args[name]; ok {
		return v
	}
	return a.call.Args[strconv.Itoa(pos)]
}

func (a *args) int(name string, pos int, def int64) int64 {
	switch v := a.get(name, pos).(type) {
	case nil:
		return def
	case int64:
		return v
	default:
		a.err = fmt.Errorf("%s must be an int, not %v", name, v)
		return def
	}
}

func (a *args) float(name string, pos int, def float64) float64 {
	switch v := a.get(name, pos).(type) {
	case nil:
		return def
	case int64:
		return float64(v)
	case float64:
		return v
	default:
		a.err = fmt.Errorf("%s must be a number, not %v", name, v)
		return def
	}
}

// mix is a counter-based random function (splitmix64 finaliser): the
// value for record n depends only on key and n, so a restart at any record
// regenerates the same values.
func mix(key, n uint64) uint64 {
	z := key + (n+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// formatPiece is a part of a format pattern: literal text, then the verb
// ('d', 's' or 'v') of the next argument, or 0 after the last one.
type formatPiece struct {
	text string
	verb byte
}

// parseFormat splits pattern into pieces when every verb is a plain %d,
// %s or %v (or %%) and there is one argument per verb; fast is false
// otherwise, and fmt.Sprintf formats it.
func parseFormat(pattern string, nargs int) (pieces []formatPiece, fast bool) {
	var text []byte
	verbs := 0
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' {
			text = append(text, c)
			continue
		}
		if i+1 >= len(pattern) {
			return nil, false
		}
		i++
		switch v := pattern[i]; v {
		case '%':
			text = append(text, '%')
		case 'd', 's', 'v':
			pieces = append(pieces, formatPiece{text: string(text), verb: v})
			text = text[:0]
			verbs++
		default:
			return nil, false
		}
	}
	if verbs != nargs {
		return nil, false
	}
	return append(pieces, formatPiece{text: string(text)}), true
}

// appendFormat formats record n's arguments into b as fmt.Sprintf would;
// ok is false for an argument whose type it does not format the same way.
func appendFormat(b []byte, pieces []formatPiece, subs []genFunc, n uint64, a *codec.Arena) ([]byte, bool) {
	for i, p := range pieces {
		b = append(b, p.text...)
		if p.verb == 0 {
			break
		}
		switch v := subs[i](n, a).(type) {
		case int64:
			if p.verb == 's' {
				return b, false
			}
			b = strconv.AppendInt(b, v, 10)
		case string:
			if p.verb == 'd' {
				return b, false
			}
			b = append(b, v...)
		case bool:
			if p.verb != 'v' {
				return b, false
			}
			b = strconv.AppendBool(b, v)
		default:
			return b, false
		}
	}
	return b, true
}

func uuid4(a, b uint64) string {
	var u [16]byte
	for i := range 8 {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	return fn.UUID4(u)
}

func literalType(v any) *types.Type {
	switch v.(type) {
	case string:
		return types.StringType
	case int64:
		return types.IntType
	case float64:
		return types.FloatType
	case bool:
		return types.BoolType
	}
	return types.AnyType
}

func listItemType(items []any) *types.Type {
	var t *types.Type
	for _, it := range items {
		lt := literalType(it)
		switch {
		case t == nil:
			t = lt
		case t.Kind == types.Int && lt.Kind == types.Float || t.Kind == types.Float && lt.Kind == types.Int:
			t = types.FloatType
		case t.Kind != lt.Kind:
			return types.AnyType
		}
	}
	return t
}

// fieldNames returns the template's field names, sorted: the order of the
// output type's fields.
func fieldNames(fields map[string]any) []string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// compileFields compiles every field, in sorted order.
func compileFields(fields map[string]any, seed uint64) ([]string, []generator, []stdlib.AttrError) {
	names := fieldNames(fields)
	gens := make([]generator, len(names))
	var errs []stdlib.AttrError
	for i, name := range names {
		g, err := compileGenerator(fields[name], seed, uint64(i)+1)
		if err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "fields." + name, Message: err.Error()})
		}
		gens[i] = g
	}
	return names, gens, errs
}

func generateOutput(attrs map[string]any) *types.Type {
	fields, _ := attrs["fields"].(map[string]any)
	names, gens, errs := compileFields(fields, 0)
	if errs != nil {
		return nil
	}
	t := &types.Type{Kind: types.Record}
	for i, name := range names {
		t.Fields = append(t.Fields, &types.Field{Name: name, Type: gens[i].typ})
	}
	return t
}

func generateCheck(attrs map[string]any) []stdlib.AttrError {
	errs := checkBatch(attrs)
	if n, ok := attrs["count"].(int64); ok && n < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "count", Message: fmt.Sprintf("count must not be negative, not %d", n)})
	}
	if r, ok := attrs["rate"].(float64); ok && r < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "rate", Message: fmt.Sprintf("rate must not be negative, not %v", r)})
	}
	fields, isMap := attrs["fields"].(map[string]any)
	if v, set := attrs["fields"]; set && !isMap {
		errs = append(errs, stdlib.AttrError{Attr: "fields", Message: fmt.Sprintf("fields must be a map of field name to generator, not %T", v)})
	} else if set && len(fields) == 0 {
		errs = append(errs, stdlib.AttrError{Attr: "fields", Message: "fields must name at least one field"})
	}
	_, _, ferrs := compileFields(fields, 0)
	return append(errs, ferrs...)
}

// generate is one task of a generate stage. Task t of T produces the
// records numbered t, t+T, t+2T, ...; its partition is "gen/<t>" and the
// offset of its k-th record is k.
//
// Without a rate, worker goroutines build the next batches while the
// executor works on the current one (a record's values depend only on its
// number, so batches are independent); Read hands them out in order.
type generate struct {
	stage     string
	arena     codec.Arena // the reading goroutine's, with a rate
	rowArena  stdlib.RowArena
	recycler  *stdlib.Recycler
	partition string
	names     []string
	shape     *stdlib.Shape // of the rows built, when the executor takes rows
	gens      []genFunc
	task      uint64
	tasks     uint64
	local     uint64        // next local sequence number to hand out
	handed    atomic.Uint64 // local, for Lag (another goroutine)
	end       uint64        // local records to produce; 0 = no end
	bounded   bool
	batch     int
	rate      float64 // records per second for this task
	started   time.Time
	startSeq  uint64

	workers int
	jobs    chan *genJob   // to the workers; nil until the first Read
	ahead   []*genJob      // batches handed to the workers, in order
	next    uint64         // local sequence number of the next batch to hand out
	wg      sync.WaitGroup // the workers
}

// genJob is a batch of records a worker builds from local number seq on.
type genJob struct {
	batch []stdlib.Record
	seq   uint64
	done  chan struct{}
}

func newGenerate(cfg stdlib.Config) (*generate, error) {
	fail := func(err error) (*generate, error) { return nil, fmt.Errorf("generate %q: %v", cfg.Stage, err) }
	fields, _ := cfg.Attrs["fields"].(map[string]any)
	if len(fields) == 0 {
		return fail(fmt.Errorf("fields must name at least one field"))
	}
	count, rate := cfg.Int("count"), cfg.Float("rate")
	names, gens, errs := compileFields(fields, uint64(cfg.Int("seed")))
	if errs != nil {
		return fail(fmt.Errorf("%s: %s", errs[0].Attr, errs[0].Message))
	}
	tasks := max(cfg.Tasks, 1)
	g := &generate{
		stage:     cfg.Stage,
		partition: "gen/" + strconv.Itoa(cfg.Task),
		names:     names,
		task:      uint64(cfg.Task),
		tasks:     uint64(tasks),
		batch:     int(cfg.Int("batch")),
		recycler:  cfg.Recycler,
	}
	for _, gen := range gens {
		g.gens = append(g.gens, gen.fn)
	}
	g.workers = genWorkers()
	if cfg.Rows {
		g.shape = stdlib.NewShape(names...)
	}
	if count > 0 {
		g.bounded = true
		g.end = uint64(count) / g.tasks
		if g.task < uint64(count)%g.tasks {
			g.end++
		}
	}
	if rate > 0 {
		g.rate = rate / float64(tasks)
	}
	return g, nil
}

// Open implements stdlib.Source.
func (g *generate) Open(ctx context.Context, resume stdlib.Resumer) error {
	if off, ok := resume.Resume(g.partition, ""); ok {
		g.local = uint64(off) + 1
	}
	g.started, g.startSeq, g.next = time.Now(), g.local, g.local
	g.handed.Store(g.local)
	return nil
}

// Lag implements stdlib.Lagger for a bounded generator: the records it
// has still to produce.
func (g *generate) Lag(context.Context) []stdlib.Lag {
	if !g.bounded {
		return nil
	}
	return []stdlib.Lag{{Partition: g.partition, Behind: int64(g.end - min(g.handed.Load(), g.end)), Unit: "records"}}
}

// Read implements stdlib.Source.
func (g *generate) Read(ctx context.Context) ([]stdlib.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if g.rate == 0 {
		return g.readAhead(ctx)
	}
	n := uint64(g.batch)
	if g.bounded {
		if g.local >= g.end {
			return nil, stdlib.ErrEndOfInput
		}
		n = min(n, g.end-g.local)
	}
	// Wait until the first record of this batch is due, and emit no
	// more than are due within a tenth of a second.
	n = min(n, uint64(max(1, g.rate/10)))
	due := g.started.Add(time.Duration(float64(g.local-g.startSeq) / g.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		if err := retry.Sleep(ctx, d); err != nil {
			return nil, err
		}
	}
	batch := g.recycler.Batch(int(n))
	g.fill(batch, g.local, &g.arena, &g.rowArena)
	g.local += n
	g.handed.Store(g.local)
	return batch, nil
}

// readAhead keeps genAhead batches per worker handed out to the workers
// and returns the first once it is built.
func (g *generate) readAhead(ctx context.Context) ([]stdlib.Record, error) {
	if g.jobs == nil {
		g.jobs = make(chan *genJob, genAhead*g.workers)
		for range g.workers {
			g.wg.Go(func() {
				var a codec.Arena
				var ra stdlib.RowArena
				for j := range g.jobs {
					g.fill(j.batch, j.seq, &a, &ra)
					close(j.done)
				}
			})
		}
	}
	for len(g.ahead) < cap(g.jobs) && (!g.bounded || g.next < g.end) {
		n := uint64(g.batch)
		if g.bounded {
			n = min(n, g.end-g.next)
		}
		j := &genJob{batch: g.recycler.Batch(int(n)), seq: g.next, done: make(chan struct{})}
		g.next += n
		g.jobs <- j // never blocks: the channel holds as many as ahead may
		g.ahead = append(g.ahead, j)
	}
	if len(g.ahead) == 0 {
		return nil, stdlib.ErrEndOfInput
	}
	j := g.ahead[0]
	select {
	case <-j.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.ahead[0] = nil
	g.ahead = append(g.ahead[:0], g.ahead[1:]...)
	g.local = j.seq + uint64(len(j.batch))
	g.handed.Store(g.local)
	return j.batch, nil
}

// genAhead is how many batches per worker are built ahead of Read.
const genAhead = 2

// genWorkers is how many goroutines build batches ahead: one per P, up
// to 4.
func genWorkers() int {
	return max(1, min(runtime.GOMAXPROCS(0), 4))
}

// fill builds the records numbered from local seq (of this task) on.
func (g *generate) fill(batch []stdlib.Record, seq uint64, a *codec.Arena, ra *stdlib.RowArena) {
	names, gens := g.names, g.gens[:len(g.names)]
	for i := range batch {
		s := seq + uint64(i)
		n := s*g.tasks + g.task
		r := &batch[i]
		if g.shape != nil {
			row := ra.NewRow(g.shape)
			vals := row.Vals()
			for j := range vals {
				vals[j] = gens[j](n, a)
			}
			r.Value = row
		} else {
			m := make(map[string]any, len(names))
			for j, name := range names {
				m[name] = gens[j](n, a)
			}
			r.Value = m
		}
		r.Partition = -1
		r.Pos = stdlib.Position{Source: g.stage, Partition: g.partition, Offset: int64(s)}
	}
}

// Commit implements stdlib.Source; generated records need no commit.
func (g *generate) Commit(context.Context, []stdlib.Position) error { return nil }

// Close implements stdlib.Source: it stops the workers.
func (g *generate) Close(context.Context) error {
	if g.jobs != nil {
		close(g.jobs)
		g.wg.Wait()
		g.jobs, g.ahead = nil, nil
	}
	return nil
}
