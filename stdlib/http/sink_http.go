package httpconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/retry"
	"pipe.dev/pipe/stdlib/tlsconf"
)

func init() { stdlib.MustRegister(SinkSpec) }

// defaultRetryOn are the statuses the sink retries by default.
var defaultRetryOn = []any{int64(408), int64(425), int64(429), int64(500), int64(502), int64(503), int64(504)}

// SinkSpec is the http sink.
var SinkSpec = &stdlib.Spec{
	Kind: stdlib.SinkKind, Name: "http",
	Summary: "send records as HTTP requests (one per record, or batched as a JSON array or NDJSON); retries honouring Retry-After, an idempotency key from the source position",
	Params: append([]stdlib.Param{
		{Name: "url", Type: stdlib.String, Required: true, Expr: true, Doc: "the request URL (http or https); url := expr per record"},
		{Name: "method", Type: stdlib.String, Default: "POST", Expr: true, Doc: "the request method: POST, PUT, PATCH, DELETE or GET; method := expr per record"},
		{Name: "headers", Type: stdlib.MapOf(stdlib.String), Expr: true, Doc: "request headers; headers := expr per record (a map)"},
		{Name: "format", Type: stdlib.Enum("json", "json_array", "ndjson"), Default: stdlib.Ident("json"), Doc: "json: one request per record, its value as a JSON object; json_array: a batch of records as one JSON array; ndjson: a batch as JSON lines (application/x-ndjson)"},
		{Name: "max_batch_records", Type: stdlib.Int, Default: int64(500), Doc: "json_array, ndjson: most records in one request"},
		{Name: "max_batch_bytes", Type: stdlib.Size, Default: int64(1 << 20), Doc: "json_array, ndjson: a request body grows no larger (a single larger record goes alone)"},
		{Name: "concurrency", Type: stdlib.Int, Default: int64(4), Doc: "requests in flight at once, per task"},
		{Name: "rate_limit", Type: stdlib.Float, Default: float64(0), Doc: "most requests per second per task (retries included); 0: no limit"},
		{Name: "timeout", Type: stdlib.Duration, Default: 30 * time.Second, Doc: "longest one request may take (a request that times out is retried)"},
		{Name: "retry_on", Type: stdlib.ListOf(stdlib.Int), Default: defaultRetryOn, Doc: "response statuses retried with backoff (Retry-After honoured); connection errors are always retried. Any other status but 2xx rejects the request's records through the stage's on_error, with the status and the start of the body"},
		{Name: "idempotency_header", Type: stdlib.String, Default: "Idempotency-Key", Doc: `header carrying the request's key, "<pipeline>/<source>/<partition>/<first offset>[-<last offset>]", the same when a record is sent again after a restart; "" sends none`},
		tlsParam,
	}, append(slices.Clone(authParams), retry.Param)...),
	Delivery: []stdlib.Delivery{stdlib.AtLeastOnce},
	Releases: true,
	Check:    checkSink,
	NewSink:  func(cfg stdlib.Config) (stdlib.Sink, error) { return newSink(cfg) },
}

func checkSink(attrs map[string]any) []stdlib.AttrError {
	errs := checkClient(attrs)
	errs = append(errs, checkMethod("method", attrs["method"])...)
	for _, a := range []string{"max_batch_records", "max_batch_bytes", "concurrency"} {
		if n, ok := attrs[a].(int64); ok && n < 1 {
			errs = append(errs, stdlib.AttrError{Attr: a, Message: a + " must be at least 1"})
		}
	}
	if f, ok := attrs["rate_limit"].(float64); ok && f < 0 {
		errs = append(errs, stdlib.AttrError{Attr: "rate_limit", Message: "rate_limit must not be negative"})
	}
	errs = append(errs, stdlib.Positive(attrs, "timeout")...)
	if l, ok := attrs["retry_on"].([]any); ok {
		for _, v := range l {
			if e := checkStatus("retry_on", v, 400, 599); e != nil {
				errs = append(errs, e...)
				break
			}
		}
	}
	if h, ok := attrs["idempotency_header"].(string); ok && h != "" && !validHeaderName(h) {
		errs = append(errs, stdlib.AttrError{Attr: "idempotency_header", Message: fmt.Sprintf("%q is not a header name", h)})
	}
	return errs
}

// checkURL reports a URL that is not absolute http(s).
func checkURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("url: %v", err)
	}
	if p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("url %q is not an http:// or https:// URL with a host", p.Redacted())
	}
	return nil
}

// validHeaderName reports whether s is an HTTP header field name (a token).
func validHeaderName(s string) bool {
	for _, c := range s {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return s != ""
}

// sink is one task of an http sink stage. Write sends every record it is
// given before it returns (concurrency requests at a time), so Checkpoint
// has nothing left to do: at least once, with the idempotency key letting
// a receiver drop what a replay sends again.
type sink struct {
	client   *http.Client
	log      *slog.Logger
	pipeline string

	url, method  string
	headers      map[string]string
	format       string
	maxRecs      int
	maxBytes     int
	concurrency  int
	limiter      *limiter
	retryOn      map[int]bool
	idemHeader   string
	auth         auth
	retryTimeout time.Duration

	urlAt, methodAt, headersAt int

	// the position of the last record of the previous Write and how many
	// records before it shared it (a transform emitting several records
	// of one source record): the next one's key takes a suffix.
	lastPos stdlib.Position
	lastN   int
}

func newSink(cfg stdlib.Config) (*sink, error) {
	s := &sink{
		log: cfg.Log(), pipeline: cfg.Pipeline,
		url: cfg.String("url"), method: cfg.String("method"), format: cfg.String("format"),
		maxRecs: int(cfg.Int("max_batch_records")), maxBytes: int(cfg.Int("max_batch_bytes")),
		concurrency: int(cfg.Int("concurrency")), idemHeader: cfg.String("idempotency_header"),
		auth: newAuth(cfg), retryTimeout: cfg.Duration(retry.Param.Name),
		urlAt: cfg.ExprIndex("url"), methodAt: cfg.ExprIndex("method"), headersAt: cfg.ExprIndex("headers"),
		retryOn: map[int]bool{},
	}
	if s.format == "json" {
		s.maxRecs = 1
	}
	if m, ok := cfg.Attrs["headers"].(map[string]any); ok {
		s.headers = map[string]string{}
		for k, v := range m {
			s.headers[k], _ = v.(string)
		}
	}
	for _, v := range cfg.Attrs["retry_on"].([]any) {
		n, _ := v.(int64)
		s.retryOn[int(n)] = true
	}
	if r := cfg.Float("rate_limit"); r > 0 {
		s.limiter = newLimiter(r)
	}
	if s.urlAt < 0 {
		if err := checkURL(s.url); err != nil {
			return nil, err
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = s.concurrency
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsconf.Client(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	s.client = &http.Client{Transport: tr, Timeout: cfg.Duration("timeout"),
		// A redirect would resend the body elsewhere: the sink reports it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return s, nil
}

func (s *sink) Open(context.Context) ([]stdlib.Position, error) { return nil, nil }

func (s *sink) Checkpoint(context.Context, stdlib.Checkpoint) error { return nil }

func (s *sink) Close(context.Context) error {
	s.client.CloseIdleConnections()
	return nil
}

// request is one HTTP request of a batch: its records (indexes into the
// batch) and what they share.
type request struct {
	method, url string
	headers     map[string]string
	group       string // method, url, headers and source partition
	idx         []int
	body        []byte
	key         string
}

// Write sends the batch and returns once every request was answered 2xx
// or rejected (RecordErrors for the records of rejected requests).
func (s *sink) Write(ctx context.Context, batch []stdlib.Record) error {
	var rerrs stdlib.RecordErrors
	open := map[string]*request{}
	var reqs []*request
	keys := make([]string, len(batch))
	for i := range batch {
		r := &batch[i]
		keys[i] = s.recordKey(r)
		method, u, headers, err := s.target(r)
		if err != nil {
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
			continue
		}
		start := len(reqs)
		group := method + " " + u + "\x00" + headerKey(headers) + "\x00" + r.Pos.Source + "\x00" + r.Pos.Partition
		q := open[group]
		if q == nil || len(q.idx) >= s.maxRecs {
			q = &request{method: method, url: u, headers: headers, group: group}
			open[group] = q
			reqs = append(reqs, q)
		}
		body, err := s.appendRecord(q.body, len(q.idx) == 0, r.Value)
		if err != nil {
			rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: err})
			if len(reqs) > start {
				reqs = reqs[:start]
				delete(open, group)
			}
			continue
		}
		if len(q.idx) > 0 && len(body)+1 > s.maxBytes {
			// Too large with it: it opens the next request.
			q = &request{method: method, url: u, headers: headers, group: group}
			open[group] = q
			reqs = append(reqs, q)
			body, _ = s.appendRecord(nil, true, r.Value)
		}
		q.body = body
		q.idx = append(q.idx, i)
	}
	for _, q := range reqs {
		if s.format == "json_array" {
			q.body = append(q.body, ']')
		}
		q.key = s.pipeline + "/" + keys[q.idx[0]]
		if len(q.idx) > 1 {
			q.key += "-" + lastKeyPart(keys[q.idx[len(q.idx)-1]])
		}
	}
	// Send them, concurrency at a time.
	var (
		mu   sync.Mutex
		ferr error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, s.concurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, q := range reqs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rejected, err := s.send(ctx, q)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if ferr == nil {
					ferr = err
					cancel()
				}
			case rejected != nil:
				for _, i := range q.idx {
					rerrs = append(rerrs, stdlib.RecordError{Index: i, Err: rejected})
				}
			}
		}()
	}
	wg.Wait()
	if ferr != nil {
		return ferr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(rerrs) > 0 {
		slices.SortFunc(rerrs, func(a, b stdlib.RecordError) int { return a.Index - b.Index })
		return rerrs
	}
	return nil
}

// recordKey returns the key part of a record: "<source>/<partition>/<offset>",
// with ".n" added for the n-th further record of one position.
func (s *sink) recordKey(r *stdlib.Record) string {
	if r.Pos == s.lastPos {
		s.lastN++
	} else {
		s.lastPos, s.lastN = r.Pos, 0
	}
	k := r.Pos.Source + "/" + r.Pos.Partition + "/" + strconv.FormatInt(r.Pos.Offset, 10)
	if s.lastN > 0 {
		k += "." + strconv.Itoa(s.lastN)
	}
	return k
}

// lastKeyPart returns the offset part of a record key.
func lastKeyPart(k string) string { return k[strings.LastIndexByte(k, '/')+1:] }

// target returns a record's method, URL and headers.
func (s *sink) target(r *stdlib.Record) (method, u string, headers map[string]string, err error) {
	method, u, headers = s.method, s.url, s.headers
	if v, ok := r.Attr(s.methodAt); ok && v != nil {
		method = strings.ToUpper(v.(string))
		if e := checkMethod("method", method); e != nil {
			return "", "", nil, errors.New(e[0].Message)
		}
	}
	if v, ok := r.Attr(s.urlAt); ok {
		if v == nil {
			return "", "", nil, errors.New("url := evaluated to null")
		}
		u = v.(string)
		if err := checkURL(u); err != nil {
			return "", "", nil, err
		}
	}
	if v, ok := r.Attr(s.headersAt); ok && v != nil {
		m, _ := v.(map[string]any)
		h := make(map[string]string, len(s.headers)+len(m))
		maps.Copy(h, s.headers)
		for k, x := range m {
			if x == nil {
				continue
			}
			if !validHeaderName(k) {
				return "", "", nil, fmt.Errorf("headers: %q is not a header name", k)
			}
			h[k], _ = x.(string)
		}
		headers = h
	}
	return method, u, headers, nil
}

// headerKey returns a canonical text of headers, for grouping.
func headerKey(h map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(h)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(h[k])
		b.WriteByte(0)
	}
	return b.String()
}

// appendRecord appends a record's value to a request body.
func (s *sink) appendRecord(body []byte, first bool, v any) ([]byte, error) {
	start := len(body)
	switch s.format {
	case "json_array":
		if first {
			body = append(body, '[')
		} else {
			body = append(body, ',')
		}
	case "ndjson":
	}
	out, err := codec.AppendJSON(body, v)
	if err != nil {
		return body[:start], fmt.Errorf("encode value: %w", err)
	}
	if s.format == "ndjson" {
		out = append(out, '\n')
	}
	return out, nil
}

// contentType is the Content-Type of the sink's bodies.
func (s *sink) contentType() string {
	if s.format == "ndjson" {
		return "application/x-ndjson"
	}
	return "application/json"
}

// errRejected marks a request the server refused (its records go through
// the stage's error policy).
type errRejected struct {
	method, url string
	status      string
	body        string
}

func (e *errRejected) Error() string {
	return fmt.Sprintf("%s %s: %s: %s", e.method, e.url, e.status, e.body)
}

// send sends one request until it is answered 2xx (nil, nil), refused
// (the rejection, nil) or retry_timeout has passed since its first failure
// (nil, error).
func (s *sink) send(ctx context.Context, q *request) (*errRejected, error) {
	redacted := q.url
	if p, err := url.Parse(q.url); err == nil {
		p.RawQuery = ""
		redacted = p.Redacted()
	}
	var since time.Time
	for attempt := 0; ; attempt++ {
		if err := s.limiter.wait(ctx); err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, q.method, q.url, bytes.NewReader(q.body))
		if err != nil {
			return &errRejected{method: q.method, url: redacted, status: "invalid request", body: err.Error()}, nil
		}
		req.Header.Set("Content-Type", s.contentType())
		for k, v := range q.headers {
			req.Header.Set(k, v)
		}
		if s.idemHeader != "" {
			req.Header.Set(s.idemHeader, q.key)
		}
		s.auth.set(req)
		resp, err := s.client.Do(req)
		var wait time.Duration
		var cause error
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // without the URL, which may hold a key
			}
			if !retry.Network(err) && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
				return nil, fmt.Errorf("%s %s: %w", q.method, redacted, err)
			}
			cause = fmt.Errorf("%s %s: %w", q.method, redacted, err)
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			switch {
			case resp.StatusCode >= 200 && resp.StatusCode < 300:
				if attempt > 0 {
					s.log.Info("http sink: delivered after retries", "url", redacted, "attempts", attempt+1)
				}
				return nil, nil
			case !s.retryOn[resp.StatusCode]:
				return &errRejected{method: q.method, url: redacted, status: resp.Status, body: strings.TrimSpace(string(body))}, nil
			}
			cause = fmt.Errorf("%s %s: %s", q.method, redacted, resp.Status)
			wait = retryAfter(resp.Header.Get("Retry-After"))
		}
		if since.IsZero() {
			since = time.Now()
		}
		if wait == 0 {
			d := min(100*time.Millisecond<<min(attempt, 10), 5*time.Second)
			wait = d/2 + rand.N(d/2+1)
		} else {
			wait += rand.N(wait/10 + 1) // spread the retries of many requests told the same
		}
		if time.Since(since)+wait > s.retryTimeout {
			return nil, fmt.Errorf("gave up after %d attempts in %v (retry_timeout %v): %w", attempt+1,
				time.Since(since).Round(time.Millisecond), s.retryTimeout, cause)
		}
		if attempt == 0 || attempt%10 == 0 {
			s.log.Warn("http sink: retrying", "attempt", attempt+1, "in", wait.Round(time.Millisecond), "error", cause.Error())
		}
		if err := retry.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// isTimeout reports a client timeout.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// retryAfter parses a Retry-After value (seconds or an HTTP date); 0 when
// absent or unreadable.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, 10*time.Minute)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), 10*time.Minute)
	}
	return 0
}

// limiter is a token bucket of requests per second, bursting to one
// second's worth; a nil limiter does not limit.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(rate float64) *limiter {
	return &limiter{rate: rate, tokens: 1, last: time.Now()}
}

// wait takes a token, sleeping until one is there.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.tokens+now.Sub(l.last).Seconds()*l.rate, max(l.rate, 1))
	l.last = now
	l.tokens--
	var d time.Duration
	if l.tokens < 0 {
		d = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	return retry.Sleep(ctx, d)
}
