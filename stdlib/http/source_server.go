package httpconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/codec"
	"pipe.dev/pipe/stdlib/tlsconf"
)

func init() { stdlib.MustRegister(ServerSourceSpec) }

// ServerSourceSpec is the http_server source.
var ServerSourceSpec = &stdlib.Spec{
	Kind: stdlib.SourceKind, Name: "http_server",
	Summary: "receive records in HTTP requests (webhooks): JSON, NDJSON or raw bodies, answered 2xx once a checkpoint made them durable; Idempotency-Key retries are not doubled",
	Params: append([]stdlib.Param{
		{Name: "listen", Type: stdlib.String, Required: true, Doc: `address to listen on, host:port (":8080", "127.0.0.1:9000"); port 0 picks a free one (logged)`},
		{Name: "path", Type: stdlib.String, Default: "/", Doc: "the request path records are posted to (other paths: 404); it names the source's partition"},
		{Name: "methods", Type: stdlib.ListOf(stdlib.String), Default: []any{"POST"}, Doc: "request methods accepted (others: 405): POST, PUT, PATCH"},
		{Name: "format", Type: stdlib.Enum("json", "ndjson", "raw"), Default: stdlib.Ident("json"), Doc: "json: the body is one JSON object (one record) or an array of them; ndjson: one object per line; raw: the whole body as {value: string}"},
		{Name: "max_body_size", Type: stdlib.Size, Default: int64(10 << 20), Doc: "largest body accepted; a larger one is answered 413"},
		{Name: "max_pending", Type: stdlib.Int, Default: int64(1000), Doc: "requests accepted but not yet handed on; beyond them requests are answered 429 with Retry-After (backpressure)"},
		{Name: "reply_timeout", Type: stdlib.Duration, Default: 30 * time.Second, Doc: "longest a request waits for the checkpoint covering its records; then it is answered 503 with Retry-After (its records stay on their way: a retry with the same idempotency key waits for them and is not doubled)"},
		{Name: "status", Type: stdlib.Int, Default: int64(200), Doc: "the status answered once a request's records are durable (2xx)"},
		{Name: "malformed", Type: stdlib.Enum("reject", "on_error"), Default: stdlib.Ident("reject"), Doc: "a record that does not decode: reject answers 400 naming its line and byte offset, and hands on nothing of the request; on_error hands it to the stage's on_error (dead letter, skip, fail) and the request's other records on"},
		{Name: "idempotency_header", Type: stdlib.String, Default: "Idempotency-Key", Doc: "request header whose value names a request: a request repeating the key of one answered 2xx (or still on its way) is answered as that one was and hands on nothing; keys are kept for dedupe_window"},
		{Name: "dedupe_window", Type: stdlib.Duration, Default: 24 * time.Hour, Doc: "how long the keys of committed requests are kept"},
		{Name: "headers", Type: stdlib.ListOf(stdlib.String), Default: []any{}, Doc: "request headers copied to the records' meta.headers (e.g. [\"X-GitHub-Event\"])"},
		tlsParam,
	}, authParams...),
	Schema:    true,
	Meta:      []stdlib.MetaField{stdlib.MetaOffset, stdlib.MetaKey, stdlib.MetaTimestamp, stdlib.MetaHeaders},
	Output:    serverOutput,
	Check:     checkServer,
	NewSource: func(cfg stdlib.Config) (stdlib.Source, error) { return newServer(cfg) },
}

func serverOutput(attrs map[string]any) *types.Type {
	if f, _ := attrs["format"].(stdlib.Ident); f == "raw" {
		return types.RecordOf(&types.Field{Name: "value", Type: types.StringType})
	}
	return nil
}

func checkServer(attrs map[string]any) []stdlib.AttrError {
	var errs []stdlib.AttrError
	errs = append(errs, checkAuth(attrs)...)
	if l, ok := attrs["listen"].(string); ok && !strings.Contains(l, "${") {
		if _, port, err := net.SplitHostPort(l); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "listen", Message: fmt.Sprintf("listen %q is not host:port (%v)", l, err)})
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			errs = append(errs, stdlib.AttrError{Attr: "listen", Message: fmt.Sprintf("listen %q: port %q is not a number from 0 to 65535", l, port)})
		}
	}
	if p, ok := attrs["path"].(string); ok && !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "${") {
		errs = append(errs, stdlib.AttrError{Attr: "path", Message: fmt.Sprintf("path %q must start with /", p)})
	}
	if l, ok := attrs["methods"].([]any); ok {
		if len(l) == 0 {
			errs = append(errs, stdlib.AttrError{Attr: "methods", Message: "methods must name at least one method"})
		}
		for _, v := range l {
			if m, ok := v.(string); ok && m != "POST" && m != "PUT" && m != "PATCH" && !strings.HasPrefix(m, "${") {
				errs = append(errs, stdlib.AttrError{Attr: "methods", Message: fmt.Sprintf("method %q takes no body to read records from: want POST, PUT or PATCH", m)})
			}
		}
	}
	errs = append(errs, checkStatus("status", attrs["status"], 200, 299)...)
	for _, a := range []string{"max_body_size", "max_pending"} {
		if n, ok := attrs[a].(int64); ok && n < 1 {
			errs = append(errs, stdlib.AttrError{Attr: a, Message: a + " must be at least 1"})
		}
	}
	errs = append(errs, stdlib.Positive(attrs, "reply_timeout", "dedupe_window")...)
	if h, ok := attrs["idempotency_header"].(string); ok && h != "" && !validHeaderName(h) {
		errs = append(errs, stdlib.AttrError{Attr: "idempotency_header", Message: fmt.Sprintf("%q is not a header name", h)})
	}
	return errs
}

// server is the http_server source: one task (a listening socket).
//
// A request's records get the next offsets of the source's single
// partition (its path). Before Read hands them on, the last offset of the
// request is appended, with its idempotency key, to the position log in
// the state directory ([seqLog]) and synced. The request is answered once
// Commit reports a checkpoint covering that offset: its records are then
// durable in every sink. After a crash, the log's keys at or below the
// highest position stored downstream are those of committed requests; the
// others' records were lost with the process and were never answered 2xx.
type server struct {
	log                  *slog.Logger
	listen, path         string
	methods              map[string]bool
	format               string
	codecs               sync.Pool // of codec.Codec: a codec is not safe for concurrent use
	maxBody              int64
	replyTimeout, window time.Duration
	status               int
	onError              bool
	idemHeader           string
	keepHeaders          []string
	auth                 auth
	queue                chan *incoming
	seq                  *seqLog
	logFile              string // the position log
	srv                  *http.Server
	ln                   net.Listener
	closed               chan struct{}
	closeOnce            sync.Once
	identity             string
	mu                   sync.Mutex
	next                 int64                // next offset to give out
	done                 map[string]seqEntry  // keys of committed requests
	pending              map[string]*incoming // keys of requests accepted, not committed
	waiting              []*incoming          // handed on, not committed, by offset
	committed            int64
	readWait             time.Duration
}

// incoming is one accepted request.
type incoming struct {
	key         string
	recs        []stdlib.Record
	first, last int64
	done        chan struct{} // closed once committed or refused
	status      int           // the answer, when done is closed
	retryAfter  bool
}

func newServer(cfg stdlib.Config) (*server, error) {
	if cfg.Tasks > 1 {
		return nil, errors.New("http_server listens on one address: it runs as one task (tasks = 1)")
	}
	s := &server{
		log: cfg.Log(), listen: cfg.String("listen"), path: cfg.String("path"), methods: map[string]bool{},
		format: cfg.String("format"), maxBody: cfg.Int("max_body_size"),
		replyTimeout: cfg.Duration("reply_timeout"), window: cfg.Duration("dedupe_window"),
		status: int(cfg.Int("status")), onError: cfg.String("malformed") == "on_error",
		idemHeader: cfg.String("idempotency_header"), keepHeaders: cfg.Strings("headers"),
		auth: newAuth(cfg), queue: make(chan *incoming, cfg.Int("max_pending")),
		closed: make(chan struct{}), done: map[string]seqEntry{}, pending: map[string]*incoming{},
		logFile: logPath(cfg, "http_server"), readWait: 20 * time.Millisecond,
	}
	for _, m := range cfg.Strings("methods") {
		s.methods[strings.ToUpper(m)] = true
	}
	if s.format != "raw" {
		if _, err := codec.New("json", cfg.Schema, codec.Options{}); err != nil {
			return nil, err
		}
		schema := cfg.Schema
		s.codecs.New = func() any { c, _ := codec.New("json", schema, codec.Options{}); return c }
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	if t, ok := cfg.Block("tls"); ok {
		tc, err := tlsconf.Server(t)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		srv.TLSConfig = tc
	}
	s.srv = srv
	return s, nil
}

// Open reads the position log, settles which requests were committed and
// starts listening.
func (s *server) Open(ctx context.Context, resume stdlib.Resumer) error {
	l, entries, err := openSeqLog(s.logFile)
	if err != nil {
		return err
	}
	s.seq, s.identity = l, l.identity
	held := heldOffset(resume, s.path, s.identity)
	cutoff := time.Now().Add(-s.window).Unix()
	var kept []seqEntry
	lost := 0
	for _, e := range entries {
		switch {
		case e.End > held:
			lost++
		case e.Key != "" && e.Time >= cutoff:
			kept = append(kept, e)
			s.done[e.Key] = e
		}
	}
	if lost > 0 {
		s.log.Info("http_server: requests not covered by a checkpoint were lost with the last run (never answered 2xx)", "requests", lost, "durable_offset", held)
	}
	if err := l.rewrite(kept); err != nil {
		return fmt.Errorf("position log: %w", err)
	}
	s.next = max(held, l.high) + 1
	s.committed = held
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return err
	}
	if s.srv.TLSConfig != nil {
		ln = tls.NewListener(ln, s.srv.TLSConfig)
	}
	s.ln = ln
	s.log.Info("http_server: listening", "address", ln.Addr().String(), "path", s.path)
	go s.srv.Serve(ln)
	return nil
}

// Addr returns the address the server listens on (once open).
func (s *server) Addr() string { return s.ln.Addr().String() }

// Read hands on the records of the requests accepted since the last call,
// after logging their last offsets and keys.
func (s *server) Read(ctx context.Context) ([]stdlib.Record, error) {
	t := time.NewTimer(s.readWait)
	defer t.Stop()
	var reqs []*incoming
	select {
	case q := <-s.queue:
		reqs = append(reqs, q)
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n := len(reqs[0].recs)
more:
	for n < 4096 {
		select {
		case q := <-s.queue:
			reqs = append(reqs, q)
			n += len(q.recs)
		default:
			break more
		}
	}
	out := make([]stdlib.Record, 0, n)
	var entries []seqEntry
	now := time.Now().Unix()
	s.mu.Lock()
	for i, q := range reqs {
		q.first = s.next
		for j := range q.recs {
			q.recs[j].Pos.Partition = s.path
			q.recs[j].Pos.Offset = s.next
			s.next++
		}
		q.last = s.next - 1
		if q.key != "" || i == len(reqs)-1 {
			entries = append(entries, seqEntry{End: q.last, Key: q.key, Time: now})
		}
		out = append(out, q.recs...)
		q.recs = nil
	}
	s.mu.Unlock()
	if err := s.seq.append(entries); err != nil {
		return nil, fmt.Errorf("position log: %w", err)
	}
	s.mu.Lock()
	s.waiting = append(s.waiting, reqs...)
	s.mu.Unlock()
	return out, nil
}

// Commit answers the requests a completed checkpoint covers.
func (s *server) Commit(_ context.Context, positions []stdlib.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range positions {
		if p.Partition != s.path || p.Offset <= s.committed {
			continue
		}
		s.committed = p.Offset
	}
	now := time.Now().Unix()
	n := 0
	for _, q := range s.waiting {
		if q.last > s.committed {
			break
		}
		if q.key != "" {
			delete(s.pending, q.key)
			s.done[q.key] = seqEntry{End: q.last, Key: q.key, Time: now}
		}
		q.status = s.status
		close(q.done)
		n++
	}
	s.waiting = s.waiting[n:]
	// Keep the log short: rewrite it with the keys still in the window.
	if s.seq.lines > 100000 {
		cutoff := time.Now().Add(-s.window).Unix()
		var kept []seqEntry
		for k, e := range s.done {
			if e.Time < cutoff {
				delete(s.done, k)
				continue
			}
			kept = append(kept, e)
		}
		for _, q := range s.waiting {
			kept = append(kept, seqEntry{End: q.last, Key: q.key, Time: now})
		}
		if err := s.seq.rewrite(kept); err != nil {
			return fmt.Errorf("position log: %w", err)
		}
	}
	return nil
}

// Close stops listening; requests still waiting are answered 503.
func (s *server) Close(context.Context) error {
	s.closeOnce.Do(func() { close(s.closed) })
	if s.ln != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.srv.Shutdown(ctx)
		cancel()
	}
	if s.seq != nil {
		return s.seq.close()
	}
	return nil
}

// reply writes a JSON answer.
func reply(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(body)
	w.Write(append(b, '\n'))
}

// ServeHTTP accepts one request.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.path {
		reply(w, http.StatusNotFound, map[string]any{"error": "not found"})
		return
	}
	if !s.methods[r.Method] {
		w.Header().Set("Allow", strings.Join(mapKeys(s.methods), ", "))
		reply(w, http.StatusMethodNotAllowed, map[string]any{"error": "method not allowed"})
		return
	}
	if !s.auth.allows(r) {
		if s.auth.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="pipe"`)
		} else {
			w.Header().Set("WWW-Authenticate", "Bearer")
		}
		reply(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			reply(w, http.StatusRequestEntityTooLarge, map[string]any{"error": fmt.Sprintf("body larger than max_body_size (%d bytes)", s.maxBody)})
			return
		}
		reply(w, http.StatusBadRequest, map[string]any{"error": "reading body: " + err.Error()})
		return
	}
	key := ""
	if s.idemHeader != "" {
		key = r.Header.Get(s.idemHeader)
	}
	if key != "" {
		s.mu.Lock()
		e, dup := s.done[key]
		q := s.pending[key]
		s.mu.Unlock()
		if dup {
			w.Header().Set("Idempotent-Replayed", "true")
			reply(w, s.status, map[string]any{"duplicate": true, "last_offset": e.End})
			return
		}
		if q != nil {
			w.Header().Set("Idempotent-Replayed", "true")
			s.await(w, r, q, true)
			return
		}
	}
	recs, bad := s.decode(body)
	if bad != nil {
		reply(w, http.StatusBadRequest, map[string]any{"error": bad.msg, "line": bad.line, "byte": bad.offset})
		return
	}
	now := time.Now()
	var hs []stdlib.Header
	for _, h := range s.keepHeaders {
		if v := r.Header.Get(h); v != "" {
			hs = append(hs, stdlib.Header{Key: h, Value: []byte(v)})
		}
	}
	for i := range recs {
		recs[i].Time, recs[i].Headers, recs[i].Partition = now, hs, -1
		if key != "" {
			recs[i].Key = key
		}
	}
	if len(recs) == 0 {
		reply(w, s.status, map[string]any{"records": 0})
		return
	}
	q := &incoming{key: key, recs: recs, done: make(chan struct{})}
	if key != "" {
		s.mu.Lock()
		if p := s.pending[key]; p != nil { // a twin arrived meanwhile
			s.mu.Unlock()
			s.await(w, r, p, true)
			return
		}
		if e, dup := s.done[key]; dup {
			s.mu.Unlock()
			reply(w, s.status, map[string]any{"duplicate": true, "last_offset": e.End})
			return
		}
		s.pending[key] = q
		s.mu.Unlock()
	}
	select {
	case s.queue <- q:
	default:
		s.mu.Lock()
		if key != "" {
			delete(s.pending, key)
		}
		q.status, q.retryAfter = http.StatusTooManyRequests, true
		close(q.done)
		s.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		reply(w, http.StatusTooManyRequests, map[string]any{"error": "too many requests pending (max_pending)"})
		return
	}
	s.await(w, r, q, false)
}

// await answers a request once q is committed, refused, or reply_timeout
// passed.
func (s *server) await(w http.ResponseWriter, r *http.Request, q *incoming, twin bool) {
	t := time.NewTimer(s.replyTimeout)
	defer t.Stop()
	select {
	case <-q.done:
		if q.status >= 200 && q.status < 300 {
			body := map[string]any{"records": q.last - q.first + 1, "first_offset": q.first, "last_offset": q.last}
			if twin {
				body["duplicate"] = true
			}
			reply(w, q.status, body)
			return
		}
		w.Header().Set("Retry-After", "1")
		reply(w, q.status, map[string]any{"error": http.StatusText(q.status)})
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		reply(w, http.StatusServiceUnavailable, map[string]any{"error": "no checkpoint covered the request within reply_timeout; retry with the same idempotency key"})
	case <-s.closed:
		w.Header().Set("Retry-After", "1")
		reply(w, http.StatusServiceUnavailable, map[string]any{"error": "the pipeline is stopping"})
	case <-r.Context().Done():
	}
}

// malformed names the first record of a body that does not decode.
type malformed struct {
	msg          string
	line, offset int64
}

// decode splits a body into records. With malformed = reject, the first
// record that does not decode is returned instead; with on_error it comes
// with Err set.
func (s *server) decode(body []byte) ([]stdlib.Record, *malformed) {
	var recs []stdlib.Record
	var c codec.Codec
	if s.format != "raw" {
		c = s.codecs.Get().(codec.Codec)
		defer s.codecs.Put(c)
	}
	add := func(raw []byte, start int64) *malformed {
		v, err := c.Decode(raw)
		if err == nil {
			recs = append(recs, stdlib.Record{Value: v, Raw: raw})
			return nil
		}
		line := int64(bytes.Count(body[:start], []byte{'\n'})) + 1
		err = fmt.Errorf("line %d (byte %d): %w", line, start, err)
		if !s.onError {
			return &malformed{msg: err.Error(), line: line, offset: start}
		}
		recs = append(recs, stdlib.Record{Raw: raw, Err: err})
		return nil
	}
	switch s.format {
	case "raw":
		return []stdlib.Record{{Value: map[string]any{"value": string(body)}, Raw: body}}, nil
	case "ndjson":
		start := 0
		for start < len(body) {
			end := bytes.IndexByte(body[start:], '\n')
			if end < 0 {
				end = len(body)
			} else {
				end += start
			}
			line := bytes.TrimRight(body[start:end], "\r")
			if len(bytes.TrimSpace(line)) > 0 {
				if m := add(line, int64(start)); m != nil {
					return nil, m
				}
			}
			start = end + 1
		}
		return recs, nil
	}
	// json: an object, or an array of objects.
	trim := bytes.TrimLeft(body, " \t\r\n")
	if len(trim) == 0 {
		return nil, nil
	}
	if trim[0] != '[' {
		if m := add(body, int64(len(body)-len(trim))); m != nil {
			return nil, m
		}
		return recs, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, &malformed{msg: err.Error(), line: 1, offset: 0}
	}
	for dec.More() {
		var raw json.RawMessage
		start := dec.InputOffset()
		if err := dec.Decode(&raw); err != nil {
			// Past a syntax error nothing can be read: always a 400.
			off := dec.InputOffset()
			for off < int64(len(body)) && (body[off] == ',' || body[off] == ' ' || body[off] == '\n' || body[off] == '\r' || body[off] == '\t') {
				off++
			}
			line := int64(bytes.Count(body[:off], []byte{'\n'})) + 1
			return nil, &malformed{msg: fmt.Sprintf("line %d (byte %d): %v", line, off, err), line: line, offset: off}
		}
		// InputOffset before Decode sits before the separating comma.
		for start < int64(len(body)) && (body[start] == ',' || body[start] == ' ' || body[start] == '\n' || body[start] == '\r' || body[start] == '\t') {
			start++
		}
		if m := add(raw, start); m != nil {
			return nil, m
		}
	}
	if _, err := dec.Token(); err != nil {
		off := dec.InputOffset()
		line := int64(bytes.Count(body[:off], []byte{'\n'})) + 1
		return nil, &malformed{msg: fmt.Sprintf("line %d (byte %d): %v", line, off, err), line: line, offset: off}
	}
	return recs, nil
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for _, k := range methods {
		if m[k] {
			out = append(out, k)
		}
	}
	return out
}
