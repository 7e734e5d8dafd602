// Package devreg is a Confluent-compatible Schema Registry for development
// and tests: it keeps subjects, versions, ids, references and
// compatibility levels in memory, checks Avro compatibility (BACKWARD,
// FORWARD, FULL, their _TRANSITIVE forms, NONE) before registering, and
// forgets everything when it stops. It has no authentication, no
// persistence and no cluster: it is not for production.
//
// Protobuf and JSON schemas must compile and pass simple compatibility
// checks (see formats.go).
package devreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	havro "github.com/hamba/avro/v2"

	"pipe.dev/pipe/stdlib/schemareg"
)

// Registry is a running development registry.
type Registry struct {
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	schemas  []*schema // by id - 1
	subjects map[string]*subject
	compat   string // global level
}

type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

type schema struct {
	id   int
	typ  string // AVRO, PROTOBUF, JSON
	text string
	refs []reference
	key  string // what makes two registrations the same schema
}

type version struct {
	version int
	id      int
	deleted bool
}

type subject struct {
	versions []version
	compat   string // "" follows the global level
}

// Start listens on addr (host:port; port 0 picks one) and serves until
// Close.
func Start(addr string) (*Registry, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	r := &Registry{ln: ln, subjects: map[string]*subject{}, compat: schemareg.Backward}
	r.srv = &http.Server{Handler: r}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL returns the registry's base URL.
func (r *Registry) URL() string { return "http://" + r.ln.Addr().String() }

// Close stops the registry.
func (r *Registry) Close() error {
	return r.srv.Shutdown(context.Background())
}

// Error codes of the Confluent registry's API.
const (
	codeSubjectNotFound = 40401
	codeVersionNotFound = 40402
	codeSchemaNotFound  = 40403
	codeIncompatible    = 409
	codeInvalidSchema   = 42201
	codeInvalidVersion  = 42202
	codeInvalidLevel    = 42203
)

type apiError struct {
	status int
	code   int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errf(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var parts []string
	for _, p := range strings.Split(strings.Trim(req.URL.EscapedPath(), "/"), "/") {
		u, err := urlUnescape(p)
		if err != nil {
			writeErr(w, errf(http.StatusNotFound, 404, "bad path"))
			return
		}
		parts = append(parts, u)
	}
	var body struct {
		Schema        string      `json:"schema"`
		SchemaType    string      `json:"schemaType"`
		References    []reference `json:"references"`
		Compatibility string      `json:"compatibility"`
	}
	if req.Method == http.MethodPost || req.Method == http.MethodPut {
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			writeErr(w, errf(http.StatusUnprocessableEntity, 422, "bad request body: %v", err))
			return
		}
	}
	r.mu.Lock()
	out, err := r.route(req.Method, parts, req.URL.Query(), body.Schema, body.SchemaType, body.References, body.Compatibility)
	r.mu.Unlock()
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = errf(http.StatusInternalServerError, 50001, "%v", err)
		}
		writeErr(w, ae)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	if s, ok := out.(rawText); ok {
		_, _ = w.Write([]byte(s))
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

type rawText string

func writeErr(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": e.code, "message": e.msg})
}

func urlUnescape(s string) (string, error) { return url.PathUnescape(s) }

var notFoundRoute = errf(http.StatusNotFound, 404, "no such endpoint")

func (r *Registry) route(method string, p []string, q map[string][]string, text, typ string, refs []reference, level string) (any, error) {
	deleted := len(q["deleted"]) > 0 && q["deleted"][0] == "true"
	switch {
	case len(p) == 1 && p[0] == "subjects" && method == http.MethodGet:
		out := []string{}
		for name, s := range r.subjects {
			if deleted || s.live() > 0 {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out, nil
	case len(p) == 2 && p[0] == "schemas" && p[1] == "types":
		return []string{"AVRO", "JSON", "PROTOBUF"}, nil
	case len(p) >= 3 && p[0] == "schemas" && p[1] == "ids" && method == http.MethodGet:
		id, err := strconv.Atoi(p[2])
		if err != nil || id < 1 || id > len(r.schemas) {
			return nil, errf(http.StatusNotFound, codeSchemaNotFound, "Schema %s not found", p[2])
		}
		s := r.schemas[id-1]
		if len(p) == 4 && p[3] == "schema" {
			return rawText(s.text), nil
		}
		if len(p) == 4 && p[3] == "versions" {
			out := []map[string]any{}
			for _, name := range r.sortedSubjects() {
				for _, v := range r.subjects[name].versions {
					if v.id == id && !v.deleted {
						out = append(out, map[string]any{"subject": name, "version": v.version})
					}
				}
			}
			return out, nil
		}
		if len(p) == 4 && p[3] == "subjects" {
			out := []string{}
			for _, name := range r.sortedSubjects() {
				for _, v := range r.subjects[name].versions {
					if v.id == id && !v.deleted {
						out = append(out, name)
						break
					}
				}
			}
			return out, nil
		}
		if len(p) != 3 {
			return nil, notFoundRoute
		}
		return s.json(nil), nil
	case len(p) >= 1 && p[0] == "config":
		return r.config(method, p[1:], q, level)
	case len(p) == 4 && p[0] == "compatibility" && p[1] == "subjects" && p[3] == "versions" && method == http.MethodPost:
		return r.checkCompat(p[2], "", text, typ, refs)
	case len(p) == 5 && p[0] == "compatibility" && p[1] == "subjects" && p[3] == "versions" && method == http.MethodPost:
		return r.checkCompat(p[2], p[4], text, typ, refs)
	case len(p) >= 2 && p[0] == "subjects":
		return r.subjectRoute(method, p[1], p[2:], deleted, text, typ, refs)
	}
	return nil, notFoundRoute
}

func (r *Registry) sortedSubjects() []string {
	names := make([]string, 0, len(r.subjects))
	for n := range r.subjects {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s *subject) live() int {
	n := 0
	for _, v := range s.versions {
		if !v.deleted {
			n++
		}
	}
	return n
}

func (s *schema) json(extra map[string]any) map[string]any {
	m := map[string]any{"id": s.id, "schema": s.text}
	if s.typ != "AVRO" {
		m["schemaType"] = s.typ
	}
	if len(s.refs) > 0 {
		m["references"] = s.refs
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func (r *Registry) subjectRoute(method, name string, rest []string, deleted bool, text, typ string, refs []reference) (any, error) {
	sub := r.subjects[name]
	if sub == nil || (sub.live() == 0 && !deleted) {
		if method == http.MethodPost && len(rest) == 1 && rest[0] == "versions" {
			return r.register(name, text, typ, refs)
		}
		return nil, errf(http.StatusNotFound, codeSubjectNotFound, "Subject '%s' not found.", name)
	}
	switch {
	case len(rest) == 0 && method == http.MethodPost:
		// Look a schema up under the subject.
		s, err := r.parse(text, typ, refs)
		if err != nil {
			return nil, err
		}
		for _, v := range sub.versions {
			if !v.deleted && r.schemas[v.id-1].key == s.key {
				return r.schemas[v.id-1].json(map[string]any{"subject": name, "version": v.version}), nil
			}
		}
		return nil, errf(http.StatusNotFound, codeSchemaNotFound, "Schema not found")
	case len(rest) == 0 && method == http.MethodDelete:
		out := []int{}
		for i := range sub.versions {
			if !sub.versions[i].deleted {
				sub.versions[i].deleted = true
				out = append(out, sub.versions[i].version)
			}
		}
		return out, nil
	case len(rest) == 1 && rest[0] == "versions" && method == http.MethodGet:
		out := []int{}
		for _, v := range sub.versions {
			if deleted || !v.deleted {
				out = append(out, v.version)
			}
		}
		return out, nil
	case len(rest) == 1 && rest[0] == "versions" && method == http.MethodPost:
		return r.register(name, text, typ, refs)
	case len(rest) >= 2 && rest[0] == "versions":
		v, err := sub.find(rest[1], deleted)
		if err != nil {
			return nil, err
		}
		s := r.schemas[v.id-1]
		switch {
		case len(rest) == 2 && method == http.MethodGet:
			return s.json(map[string]any{"subject": name, "version": v.version}), nil
		case len(rest) == 2 && method == http.MethodDelete:
			for i := range sub.versions {
				if sub.versions[i].version == v.version {
					sub.versions[i].deleted = true
				}
			}
			return v.version, nil
		case len(rest) == 3 && rest[2] == "schema" && method == http.MethodGet:
			return rawText(s.text), nil
		case len(rest) == 3 && rest[2] == "referencedby" && method == http.MethodGet:
			out := []int{}
			for _, o := range r.schemas {
				for _, ref := range o.refs {
					if ref.Subject == name && ref.Version == v.version {
						out = append(out, o.id)
					}
				}
			}
			return out, nil
		}
	}
	return nil, notFoundRoute
}

// find returns the version named by s ("latest", -1 or a number).
func (sub *subject) find(s string, deleted bool) (version, error) {
	if s == "latest" || s == "-1" {
		for i := len(sub.versions) - 1; i >= 0; i-- {
			if !sub.versions[i].deleted {
				return sub.versions[i], nil
			}
		}
		return version{}, errf(http.StatusNotFound, codeVersionNotFound, "Version %s not found.", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return version{}, errf(http.StatusUnprocessableEntity, codeInvalidVersion, "The specified version '%s' is not a valid version id.", s)
	}
	for _, v := range sub.versions {
		if v.version == n && (deleted || !v.deleted) {
			return v, nil
		}
	}
	return version{}, errf(http.StatusNotFound, codeVersionNotFound, "Version %d not found.", n)
}

// parse validates a schema and returns it, not yet stored (id 0) unless
// the same schema is stored already.
func (r *Registry) parse(text, typ string, refs []reference) (*schema, error) {
	if typ == "" {
		typ = "AVRO"
	}
	s := &schema{typ: typ, text: text, refs: refs}
	switch typ {
	case "AVRO":
		as, err := r.avro(text, refs)
		if err != nil {
			return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %v", err)
		}
		s.key = "AVRO:" + as.String()
	case "PROTOBUF", "JSON":
		if err := r.validate(typ, text, refs); err != nil {
			return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %v", err)
		}
		s.key = typ + ":" + text
	default:
		return nil, errf(http.StatusUnprocessableEntity, codeInvalidSchema, "Unknown schema type %q", typ)
	}
	if len(refs) > 0 {
		b, _ := json.Marshal(refs)
		s.key += string(b)
	}
	for _, o := range r.schemas {
		if o.key == s.key {
			return o, nil
		}
	}
	return s, nil
}

// avro parses an Avro schema after the schemas it references.
func (r *Registry) avro(text string, refs []reference) (havro.Schema, error) {
	cache := &havro.SchemaCache{}
	err := r.eachRef(refs, 0, func(name string, s *schema) error {
		if _, err := havro.ParseWithCache(s.text, "", cache); err != nil {
			return fmt.Errorf("reference %q: %v", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return havro.ParseWithCache(text, "", cache)
}

// eachRef calls visit with every schema refs reach, directly or through
// the references of a referenced schema, each after those it references.
func (r *Registry) eachRef(refs []reference, depth int, visit func(name string, s *schema) error) error {
	if depth > 32 {
		return errors.New("references nest too deeply")
	}
	for _, ref := range refs {
		sub := r.subjects[ref.Subject]
		if sub == nil {
			return fmt.Errorf("reference %q: subject %q not found", ref.Name, ref.Subject)
		}
		v, err := sub.find(strconv.Itoa(ref.Version), false)
		if err != nil {
			return fmt.Errorf("reference %q: %v", ref.Name, err)
		}
		s := r.schemas[v.id-1]
		if err := r.eachRef(s.refs, depth+1, visit); err != nil {
			return err
		}
		if err := visit(ref.Name, s); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) level(name string) string {
	if sub := r.subjects[name]; sub != nil && sub.compat != "" {
		return sub.compat
	}
	return r.compat
}

// incompatibility returns why schema s may not follow the subject's live
// versions against (all of them when nil), or "".
func (r *Registry) incompatibility(name string, s *schema, level string, only *version) (string, error) {
	sub := r.subjects[name]
	if sub == nil {
		return "", nil
	}
	if s.typ != "AVRO" {
		return r.textIncompatibility(sub, s, level, only)
	}
	next, err := r.avro(s.text, s.refs)
	if err != nil {
		return "", err
	}
	var prev []schemareg.Version
	for _, v := range sub.versions {
		if v.deleted || (only != nil && v.version != only.version) {
			continue
		}
		o := r.schemas[v.id-1]
		if o.typ != "AVRO" {
			continue
		}
		os, err := r.avro(o.text, o.refs)
		if err != nil {
			return "", err
		}
		prev = append(prev, schemareg.Version{Version: v.version, Schema: os})
	}
	if only != nil && level != schemareg.None {
		level = strings.TrimSuffix(level, "_TRANSITIVE")
	}
	if err := schemareg.CheckAvro(level, next, prev); err != nil {
		return err.Error(), nil
	}
	return "", nil
}

func (r *Registry) register(name, text, typ string, refs []reference) (any, error) {
	s, err := r.parse(text, typ, refs)
	if err != nil {
		return nil, err
	}
	sub := r.subjects[name]
	if sub != nil {
		for _, v := range sub.versions {
			if !v.deleted && v.id == s.id && s.id != 0 {
				return map[string]any{"id": s.id}, nil
			}
		}
	}
	why, err := r.incompatibility(name, s, r.level(name), nil)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, errf(http.StatusConflict, codeIncompatible, "Schema being registered is incompatible with an earlier schema for subject \"%s\": %s", name, why)
	}
	if s.id == 0 {
		s.id = len(r.schemas) + 1
		r.schemas = append(r.schemas, s)
	}
	if sub == nil {
		sub = &subject{}
		r.subjects[name] = sub
	}
	n := 1
	if len(sub.versions) > 0 {
		n = sub.versions[len(sub.versions)-1].version + 1
	}
	sub.versions = append(sub.versions, version{version: n, id: s.id})
	return map[string]any{"id": s.id}, nil
}

func (r *Registry) checkCompat(name, ver, text, typ string, refs []reference) (any, error) {
	s, err := r.parse(text, typ, refs)
	if err != nil {
		return nil, err
	}
	sub := r.subjects[name]
	if sub == nil {
		if ver == "" {
			return map[string]any{"is_compatible": true, "messages": []string{}}, nil
		}
		return nil, errf(http.StatusNotFound, codeSubjectNotFound, "Subject '%s' not found.", name)
	}
	var only *version
	if ver != "" {
		v, err := sub.find(ver, false)
		if err != nil {
			return nil, err
		}
		only = &v
	}
	why, err := r.incompatibility(name, s, r.level(name), only)
	if err != nil {
		return nil, err
	}
	msgs := []string{}
	if why != "" {
		msgs = append(msgs, why)
	}
	return map[string]any{"is_compatible": why == "", "messages": msgs}, nil
}

func (r *Registry) config(method string, rest []string, q map[string][]string, level string) (any, error) {
	if len(rest) > 1 {
		return nil, notFoundRoute
	}
	if level != "" && !slices.Contains(schemareg.Levels, level) {
		return nil, errf(http.StatusUnprocessableEntity, codeInvalidLevel, "Invalid compatibility level %q", level)
	}
	if len(rest) == 0 {
		switch method {
		case http.MethodGet:
			return map[string]string{"compatibilityLevel": r.compat}, nil
		case http.MethodPut:
			r.compat = level
			return map[string]string{"compatibility": level}, nil
		}
		return nil, notFoundRoute
	}
	name := rest[0]
	sub := r.subjects[name]
	switch method {
	case http.MethodGet:
		if sub == nil || sub.compat == "" {
			if len(q["defaultToGlobal"]) > 0 && q["defaultToGlobal"][0] == "true" {
				return map[string]string{"compatibilityLevel": r.compat}, nil
			}
			return nil, errf(http.StatusNotFound, 40408, "Subject '%s' does not have subject-level compatibility configured", name)
		}
		return map[string]string{"compatibilityLevel": sub.compat}, nil
	case http.MethodPut:
		if sub == nil {
			sub = &subject{}
			r.subjects[name] = sub
		}
		sub.compat = level
		return map[string]string{"compatibility": level}, nil
	case http.MethodDelete:
		if sub != nil {
			sub.compat = ""
		}
		return map[string]string{"compatibilityLevel": r.compat}, nil
	}
	return nil, notFoundRoute
}
