package httpconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

func init() { stdlib.MustRegister(PollSourceSpec) }

// PollSourceSpec is the http_poll source.
var PollSourceSpec = &stdlib.Spec{
	Kind: stdlib.SourceKind, Name: "http_poll",
	Summary: "poll an HTTP API at an interval; the records and the cursor sent with the next request are taken from the response by expression, and a restart resumes at the cursor of the last durable record",
	Params: append([]stdlib.Param{
		{Name: "url", Type: stdlib.String, Required: true, Doc: "the URL polled (http or https)"},
		{Name: "method", Type: stdlib.String, Default: "GET", Doc: "the request method: GET or POST"},
		{Name: "headers", Type: stdlib.MapOf(stdlib.String), Doc: "request headers"},
		{Name: "interval", Type: stdlib.Duration, Default: 10 * time.Second, Doc: "time between two polls; a poll that returned records and moved the cursor is followed at once (pages)"},
		{Name: "records", Type: stdlib.String, Default: "body", Doc: "expression over the response (body: the decoded JSON, headers: a map of the first value of each header, status: int) giving the records: a list of objects, one object, or null for none"},
		{Name: "cursor", Type: stdlib.String, Doc: `expression over the response giving the cursor of the next request ("body.next_cursor", "body.items[-1].id"); null or "" keeps the current one. Without it every poll sends start_cursor`},
		{Name: "cursor_param", Type: stdlib.String, Default: "cursor", Doc: "query parameter the cursor is sent in"},
		{Name: "start_cursor", Type: stdlib.String, Doc: "the cursor of the first request; without it the first request has no cursor"},
		{Name: "timeout", Type: stdlib.Duration, Default: 30 * time.Second, Doc: "longest one request may take"},
		tlsParam,
	}, append(slices.Clone(authParams), retry.Param)...),
	Meta:      []stdlib.MetaField{stdlib.MetaOffset, stdlib.MetaTimestamp},
	Schema:    true,
	Check:     checkPoll,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newPoller(cfg) },
}

func checkPoll(attrs map[string]any) []stdlib.AttrError {
	errs := checkClient(attrs)
	if m, ok := attrs["method"].(string); ok && m != "GET" && m != "POST" {
		errs = append(errs, stdlib.AttrError{Attr: "method", Message: fmt.Sprintf("method %q: want GET or POST", m)})
	}
	errs = append(errs, stdlib.Positive(attrs, "interval", "timeout")...)
	for _, a := range []string{"records", "cursor"} {
		if src, ok := attrs[a].(string); ok {
			if _, err := compileResponseExpr(src); err != nil {
				errs = append(errs, stdlib.AttrError{Attr: a, Message: fmt.Sprintf("%s: %v", a, err)})
			}
		}
	}
	return errs
}

// compileResponseExpr compiles an expression over a response.
func compileResponseExpr(src string) (*vm.Program, error) {
	if src == "" {
		return nil, errors.New("empty expression")
	}
	return expr.Compile(src, expr.Env(map[string]any{"headers": map[string]any{}, "status": 0}) /* body: any */, expr.AllowUndefinedVariables())
}

// poller is the http_poll source (one task).
//
// Records get the next offsets of the source's partition (the URL, its
// query left out). Before Read hands a poll's records on, the last offset
// and the cursor after the poll are appended to the position log in the
// state directory ([seqLog]) and synced: after a restart, the cursor of the
// last entry at or below the highest position stored downstream is the
// one to continue from; later entries' records were not made durable and
// are fetched again.
type poller struct {
	log          *slog.Logger
	client       *http.Client
	url, method  string
	headers      map[string]string
	interval     time.Duration
	records      *vm.Program
	cursorExpr   *vm.Program
	cursorParam  string
	cursor       string
	auth         auth
	retryTimeout time.Duration
	schema       *types.Type

	partition, identity string
	seq                 *seqLog
	logPath             string
	since               []seqEntry // entries appended since the log was last rewritten
	next                int64
	// skip is how many records the first poll after Open drops: the
	// held position lies inside the page it fetches again, and the
	// records up to it were made durable.
	skip     int
	nextPoll time.Time
}

func newPoller(cfg stdlib.Config) (*poller, error) {
	if cfg.Tasks > 1 {
		return nil, errors.New("http_poll runs as one task (tasks = 1)")
	}
	p := &poller{
		log: cfg.Log(), url: cfg.String("url"), method: cfg.String("method"), interval: cfg.Duration("interval"),
		cursorParam: cfg.String("cursor_param"), cursor: cfg.String("start_cursor"),
		auth: newAuth(cfg), retryTimeout: cfg.Duration(retry.Param.Name), logPath: logPath(cfg, "http_poll"),
		schema: cfg.Schema,
	}
	if err := checkURL(p.url); err != nil {
		return nil, err
	}
	u, _ := url.Parse(p.url)
	u.RawQuery, u.User = "", nil
	p.partition = u.String()
	if m, ok := cfg.Attrs["headers"].(map[string]any); ok {
		p.headers = map[string]string{}
		for k, v := range m {
			p.headers[k], _ = v.(string)
		}
	}
	var err error
	if p.records, err = compileResponseExpr(cfg.String("records")); err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	if c := cfg.String("cursor"); c != "" {
		if p.cursorExpr, err = compileResponseExpr(c); err != nil {
			return nil, fmt.Errorf("cursor: %w", err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsconf.Client(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	p.client = &http.Client{Transport: tr, Timeout: cfg.Duration("timeout")}
	return p, nil
}

// Open finds the cursor to continue from.
func (p *poller) Open(_ context.Context, resume stdlib.Resumer) error {
	l, entries, err := openSeqLog(p.logPath)
	if err != nil {
		return err
	}
	p.seq, p.identity = l, l.identity
	held := heldOffset(resume, p.partition, p.identity)
	var kept []seqEntry
	for _, e := range entries {
		if e.End <= held {
			kept = []seqEntry{e}
		}
	}
	if len(kept) > 0 {
		p.cursor = kept[0].Cursor
		p.log.Info("http_poll: resuming", "cursor", p.cursor, "offset", held)
	}
	// The page after the kept entry is fetched again: those of its
	// records at or below the held position are not handed on twice.
	for _, e := range entries {
		if e.End > held {
			if e.Start > 0 && e.Start <= held {
				p.skip = int(held - e.Start + 1)
			}
			break
		}
	}
	if err := l.rewrite(kept); err != nil {
		return fmt.Errorf("position log: %w", err)
	}
	p.since = kept
	p.next = max(held, l.high) + 1
	return nil
}

// Read polls once the interval has passed.
func (p *poller) Read(ctx context.Context) ([]stdlib.Record, error) {
	if wait := time.Until(p.nextPoll); wait > 0 {
		// Return now and then, so that completed checkpoints get committed.
		return nil, retry.Sleep(ctx, min(wait, 100*time.Millisecond))
	}
	env, err := p.poll(ctx)
	if err != nil {
		return nil, err
	}
	p.nextPoll = time.Now().Add(p.interval)
	v, err := expr.Run(p.records, env)
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	var items []any
	switch x := v.(type) {
	case nil:
	case []any:
		items = x
	default:
		items = []any{x}
	}
	cursor := p.cursor
	if p.cursorExpr != nil {
		c, err := expr.Run(p.cursorExpr, env)
		if err != nil {
			return nil, fmt.Errorf("cursor: %w", err)
		}
		switch c := c.(type) {
		case nil:
		case string:
			if c != "" {
				cursor = c
			}
		case int64:
			cursor = strconv.FormatInt(c, 10)
		case int:
			cursor = strconv.Itoa(c)
		case float64:
			cursor = strconv.FormatFloat(c, 'f', -1, 64)
		default:
			cursor = fmt.Sprint(c)
		}
	}
	now := time.Now()
	if p.skip > 0 {
		p.log.Info("http_poll: dropping the records of the page fetched again that were made durable", "records", min(p.skip, len(items)))
		items = items[min(p.skip, len(items)):]
		p.skip = 0
	}
	start := p.next
	recs := make([]stdlib.Record, 0, len(items))
	for _, it := range items {
		r := stdlib.Record{Time: now, Partition: -1, Pos: stdlib.Position{Partition: p.partition, Offset: p.next}}
		p.next++
		if m, ok := it.(map[string]any); ok {
			r.Value = m
			if p.schema != nil {
				if r.Value, r.Err = codec.Coerce(m, p.schema, ""); r.Err != nil {
					r.Err = fmt.Errorf("records: item %d: %w", len(recs), r.Err)
				}
			}
		} else {
			r.Err = fmt.Errorf("records: item %d is %T, not an object", len(recs), it)
		}
		recs = append(recs, r)
	}
	moved := cursor != p.cursor
	if len(recs) == 0 && !moved {
		return nil, nil
	}
	e := seqEntry{End: p.next - 1, Cursor: cursor, Time: now.Unix()}
	if len(recs) > 0 {
		e.Start = start
	}
	if err := p.seq.append([]seqEntry{e}); err != nil {
		return nil, fmt.Errorf("position log: %w", err)
	}
	p.since = append(p.since, e)
	p.cursor = cursor
	if moved && len(recs) > 0 {
		p.nextPoll = time.Time{} // the next page at once
	}
	return recs, nil
}

// poll sends one request, retrying connection errors, 429 and 5xx.
func (p *poller) poll(ctx context.Context) (map[string]any, error) {
	b := retry.New(p.retryTimeout, p.log, "http_poll")
	for {
		env, wait, err := p.try(ctx)
		if err == nil {
			b.Reset()
			return env, nil
		}
		var perm *errPermanent
		if errors.As(err, &perm) || ctx.Err() != nil {
			return nil, err
		}
		if wait > 0 {
			if err := retry.Sleep(ctx, wait); err != nil {
				return nil, err
			}
			continue
		}
		if werr := b.Wait(ctx, err); werr != nil {
			return nil, werr
		}
	}
}

// errPermanent is a poll failure not worth retrying.
type errPermanent struct{ err error }

func (e *errPermanent) Error() string { return e.err.Error() }

// try sends one request and returns the response as an expression
// environment, or how long the server asked to wait.
func (p *poller) try(ctx context.Context) (map[string]any, time.Duration, error) {
	u, _ := url.Parse(p.url)
	if p.cursor != "" && p.cursorParam != "" {
		q := u.Query()
		q.Set(p.cursorParam, p.cursor)
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, p.method, u.String(), nil)
	if err != nil {
		return nil, 0, &errPermanent{err}
	}
	for k, v := range p.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/json")
	p.auth.set(req)
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a key
		}
		return nil, 0, fmt.Errorf("%s %s: %w", p.method, p.partition, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: reading the response: %w", p.method, p.partition, err)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		wait := retryAfter(resp.Header.Get("Retry-After"))
		return nil, wait, fmt.Errorf("%s %s: %s", p.method, p.partition, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		if len(body) > 512 {
			body = body[:512]
		}
		return nil, 0, &errPermanent{fmt.Errorf("%s %s: %s: %s", p.method, p.partition, resp.Status, body)}
	}
	var v any
	if len(body) > 0 {
		if v, err = codec.DecodeJSONValue(body); err != nil {
			return nil, 0, &errPermanent{fmt.Errorf("%s %s: the response is not JSON: %v", p.method, p.partition, err)}
		}
	}
	hs := make(map[string]any, len(resp.Header))
	for k, vs := range resp.Header {
		hs[k] = vs[0]
	}
	return map[string]any{"body": v, "headers": hs, "status": resp.StatusCode}, 0, nil
}

// Commit keeps the position log short: once it has many entries it is
// rewritten from the last committed one.
func (p *poller) Commit(_ context.Context, positions []stdlib.Position) error {
	if p.seq.lines < 10000 {
		return nil
	}
	var committed int64 = -1
	for _, pos := range positions {
		if pos.Partition == p.partition {
			committed = pos.Offset
		}
	}
	i := 0
	for j, e := range p.since {
		if e.End <= committed {
			i = j
		}
	}
	p.since = slices.Clone(p.since[i:])
	return p.seq.rewrite(p.since)
}

func (p *poller) Close(context.Context) error {
	p.client.CloseIdleConnections()
	if p.seq != nil {
		return p.seq.close()
	}
	return nil
}
