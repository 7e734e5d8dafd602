package schemareg

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	havro "github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Subject name strategies: which subject a topic's key or value schema is
// registered under.
const (
	TopicName       = "topic"        // <topic>-key, <topic>-value
	RecordName      = "record"       // the record's full name
	TopicRecordName = "topic_record" // <topic>-<record full name>
)

// Subject returns the subject of strategy for the key (isKey) or value of
// topic whose record's full name is record.
func Subject(strategy, topic, record string, isKey bool) string {
	switch strategy {
	case RecordName:
		return record
	case TopicRecordName:
		return topic + "-" + record
	}
	if isKey {
		return topic + "-key"
	}
	return topic + "-value"
}

// Options says how to reach a registry.
type Options struct {
	URL string
	// Username and Password: basic authentication; Token: bearer.
	Username, Password, Token string
	TLS                       *tls.Config
	Timeout                   time.Duration
}

// Client talks to a registry and caches the schemas it has looked up by
// id. It is safe for concurrent use.
type Client struct {
	cl *sr.Client
	mu sync.Mutex
	// byID holds the parsed Avro schemas looked up, and the errors of ids
	// that are not Avro or do not parse (an unknown id is asked again).
	byID map[int]avroEntry
}

type avroEntry struct {
	s   havro.Schema
	err error
}

// New returns a client of the registry o.URL.
func New(o Options) (*Client, error) {
	if o.URL == "" {
		return nil, errors.New("no registry URL")
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	hc := &http.Client{Timeout: timeout}
	if o.TLS != nil {
		hc.Transport = &http.Transport{TLSClientConfig: o.TLS}
	}
	opts := []sr.ClientOpt{sr.URLs(o.URL), sr.HTTPClient(hc), sr.UserAgent("pipe")}
	switch {
	case o.Token != "":
		opts = append(opts, sr.BearerToken(o.Token))
	case o.Username != "" || o.Password != "":
		opts = append(opts, sr.BasicAuth(o.Username, o.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &Client{cl: cl, byID: map[int]avroEntry{}}, nil
}

// SR returns the underlying franz-go client.
func (c *Client) SR() *sr.Client { return c.cl }

// AvroByID returns the Avro schema of id, its references resolved; it is
// looked up once.
func (c *Client) AvroByID(ctx context.Context, id int) (havro.Schema, error) {
	c.mu.Lock()
	e, ok := c.byID[id]
	c.mu.Unlock()
	if ok {
		return e.s, e.err
	}
	s, err := c.cl.SchemaByID(ctx, id)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("schema id %d is not in the registry", id)
		}
		return nil, fmt.Errorf("schema id %d: %w", id, err)
	}
	e.s, e.err = c.parseAvro(ctx, s)
	if e.err != nil {
		e.err = fmt.Errorf("schema id %d: %w", id, e.err)
	}
	c.mu.Lock()
	c.byID[id] = e
	c.mu.Unlock()
	return e.s, e.err
}

// Version returns version v (-1: the latest) of subject, parsed.
func (c *Client) Version(ctx context.Context, subject string, v int) (id int, s havro.Schema, err error) {
	ss, err := c.cl.SchemaByVersion(ctx, subject, v)
	if err != nil {
		if notFound(err) {
			if v < 0 {
				return 0, nil, fmt.Errorf("subject %q has no schema in the registry", subject)
			}
			return 0, nil, fmt.Errorf("subject %q has no version %d in the registry", subject, v)
		}
		return 0, nil, fmt.Errorf("subject %q: %w", subject, err)
	}
	s, err = c.parseAvro(ctx, ss.Schema)
	if err != nil {
		return 0, nil, fmt.Errorf("subject %q version %d: %w", subject, ss.Version, err)
	}
	c.mu.Lock()
	c.byID[ss.ID] = avroEntry{s: s}
	c.mu.Unlock()
	return ss.ID, s, nil
}

// Register registers the Avro schema text under subject and returns its
// id, after checking locally that it is compatible with the subject's
// versions under the subject's compatibility level: the error then names
// the field that breaks. text may use the named types the schema texts
// refs define (Avro references, the ones they use first): each is
// registered first under its full name (the record name strategy) and
// referenced by that name.
func (c *Client) Register(ctx context.Context, subject, text string, refs ...string) (int, error) {
	var srRefs []sr.SchemaReference
	for _, r := range refs {
		s, err := parseWith(r, srRefs, refs)
		if err != nil {
			return 0, fmt.Errorf("reference of subject %q: %w", subject, err)
		}
		name := r
		if n, ok := s.(havro.NamedSchema); ok {
			name = n.FullName()
		}
		ss, err := c.register(ctx, name, r, slices.Clone(srRefs), refs)
		if err != nil {
			return 0, err
		}
		srRefs = append(srRefs, sr.SchemaReference{Name: name, Subject: name, Version: ss.Version})
	}
	ss, err := c.register(ctx, subject, text, srRefs, refs)
	return ss.ID, err
}

// parseWith parses text after the first len(refs) texts of all.
func parseWith(text string, refs []sr.SchemaReference, all []string) (havro.Schema, error) {
	cache := &havro.SchemaCache{}
	for _, r := range all[:len(refs)] {
		if _, err := havro.ParseWithCache(r, "", cache); err != nil {
			return nil, err
		}
	}
	return havro.ParseWithCache(text, "", cache)
}

func (c *Client) register(ctx context.Context, subject, text string, refs []sr.SchemaReference, all []string) (sr.SubjectSchema, error) {
	next, err := parseWith(text, refs, all)
	if err != nil {
		return sr.SubjectSchema{}, fmt.Errorf("schema for subject %q: %w", subject, err)
	}
	level := Backward
	if rs := c.cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), subject); len(rs) == 1 && rs[0].Err == nil && rs[0].Level.String() != "" {
		level = rs[0].Level.String()
	}
	versions, err := c.cl.Schemas(ctx, subject)
	if err != nil && !notFound(err) {
		return sr.SubjectSchema{}, fmt.Errorf("subject %q: %w", subject, err)
	}
	var prev []Version
	for _, ss := range versions {
		if ss.Type != sr.TypeAvro {
			continue
		}
		s, err := c.parseAvro(ctx, ss.Schema)
		if err != nil {
			return sr.SubjectSchema{}, fmt.Errorf("subject %q version %d: %w", subject, ss.Version, err)
		}
		if s.Fingerprint() == next.Fingerprint() {
			return ss, nil
		}
		prev = append(prev, Version{Version: ss.Version, Schema: s})
	}
	if err := CheckAvro(level, next, prev); err != nil {
		return sr.SubjectSchema{}, fmt.Errorf("subject %q refuses the schema: %w", subject, err)
	}
	ss, err := c.cl.CreateSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro, References: refs})
	if err != nil {
		return sr.SubjectSchema{}, fmt.Errorf("register under subject %q: %w", subject, err)
	}
	c.mu.Lock()
	c.byID[ss.ID] = avroEntry{s: next}
	c.mu.Unlock()
	return ss, nil
}

// parseAvro parses an Avro schema with its references.
func (c *Client) parseAvro(ctx context.Context, s sr.Schema) (havro.Schema, error) {
	if s.Type != sr.TypeAvro {
		return nil, fmt.Errorf("the schema is %s, not Avro", s.Type)
	}
	cache := &havro.SchemaCache{}
	if err := c.parseRefs(ctx, s.References, cache, 0); err != nil {
		return nil, err
	}
	return havro.ParseWithCache(s.Schema, "", cache)
}

func (c *Client) parseRefs(ctx context.Context, refs []sr.SchemaReference, cache *havro.SchemaCache, depth int) error {
	if depth > 32 {
		return errors.New("schema references nest too deeply")
	}
	for _, r := range refs {
		ss, err := c.cl.SchemaByVersion(ctx, r.Subject, r.Version)
		if err != nil {
			return fmt.Errorf("reference %q (subject %q version %d): %w", r.Name, r.Subject, r.Version, err)
		}
		if err := c.parseRefs(ctx, ss.References, cache, depth+1); err != nil {
			return err
		}
		if _, err := havro.ParseWithCache(ss.Schema.Schema, "", cache); err != nil {
			return fmt.Errorf("reference %q: %w", r.Name, err)
		}
	}
	return nil
}

func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}
