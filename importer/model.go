package importer

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Note is something of a configuration that the written pipeline does
// not carry over as it was, or that the user must supply.
type Note struct {
	Key     string // the config key, or "" for the connector as a whole
	Message string
}

func (n Note) String() string {
	if n.Key == "" {
		return n.Message
	}
	return n.Key + ": " + n.Message
}

// stage is one stage of a pipeline being written.
type stage struct {
	kind, name, component string
	attrs                 []attr
	body                  []string // map assignments, filter wheres, route cases
	onError               string
	// reads, when set, holds the config keys the converter read since
	// they were last taken: set takes those its value comes from as the
	// attribute's origin.
	reads *reads
	// origin names where the stage as a whole came from (a transform's
	// keys), and errFrom the keys on_error came from.
	origin, errFrom string
}

type attr struct {
	name, value string
	from        []string // the config keys it was written from
}

// reads are the config keys read and not yet the origin of an attribute.
type reads struct {
	keys []string
	cfg  map[string]string
	name string // the connector's, which environment variable names start with
}

func (r *reads) add(key string) { r.keys = append(r.keys, key) }
func (r *reads) reset()         { r.keys = r.keys[:0] }

// take returns the keys read that value was written from: those whose
// value it holds (a connection URL's host, say; a key read only to decide
// what to write is credited to nothing rather than guessed). The others
// stay for the next attribute.
func (r *reads) take(value string) []string {
	var from, rest []string
	v := squash(value)
	for _, k := range dedupe(r.keys) {
		if related(v, r.cfg[k], envName(r.name, k)) {
			from = append(from, k)
		} else {
			rest = append(rest, k)
		}
	}
	r.keys = append(r.keys[:0], rest...)
	return from
}

// related says whether an attribute's value (squashed) was written from
// a config value.
func related(v, cfg, env string) bool {
	c := squash(cfg)
	switch {
	case c == "":
		return false
	case len(c) < 3:
		return v == c
	case strings.Contains(v, c), strings.Contains(v, squash(env)):
		return true
	}
	// A JDBC or other URL: its host and port.
	if i := strings.Index(cfg, "://"); i >= 0 {
		host := cfg[i+3:]
		if j := strings.IndexAny(host, "/?;"); j >= 0 {
			host = host[:j]
		}
		if j := strings.LastIndexByte(host, '@'); j >= 0 {
			host = host[j+1:]
		}
		return len(host) > 2 && strings.Contains(v, squash(host))
	}
	return false
}

// squash keeps the letters and digits of s, lower-cased.
func squash(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (s *stage) set(name, value string) {
	var from []string
	if s.reads != nil {
		from = s.reads.take(value)
	}
	for i := range s.attrs {
		if s.attrs[i].name == name {
			s.attrs[i].value = value
			if len(from) > 0 {
				s.attrs[i].from = dedupe(append(s.attrs[i].from, from...))
			}
			return
		}
	}
	s.attrs = append(s.attrs, attr{name, value, from})
}

func dedupe(keys []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// originComment is the comment written above a stage: where each of its
// attributes came from, as attr ← key.
func (s *stage) originComment() []string {
	var parts []string
	if s.origin != "" {
		parts = append(parts, "from "+s.origin)
	}
	for _, a := range s.attrs {
		if len(a.from) > 0 {
			parts = append(parts, a.name+" ← "+strings.Join(a.from, " + "))
		}
	}
	if s.onError != "" && s.errFrom != "" {
		parts = append(parts, "on_error ← "+s.errFrom)
	}
	if len(parts) == 0 {
		return nil
	}
	return wrap(strings.Join(parts, "; "), 92)
}

func (s *stage) get(name string) string {
	for _, a := range s.attrs {
		if a.name == name {
			return a.value
		}
	}
	return ""
}

// chain is a source, transforms and a sink in a row.
type chain struct {
	source     *stage
	transforms []*stage
	sink       *stage
}

// pipeline is what a connector (or a joined pair) becomes.
type pipeline struct {
	name     string
	header   []string // comment lines about where it came from
	delivery string
	tasks    int
	chains   []*chain
	extra    []*stage // dead-letter sinks and routed sinks
	flows    []string
	notes    []Note
	envs     map[string]string // environment variables to set → what they hold
	// writes is the one topic a source connector's pipeline writes, reads
	// the topics a sink connector's reads (for join).
	writes string
	reads  []string
}

func (p *pipeline) note(key, format string, args ...any) {
	p.notes = append(p.notes, Note{key, fmt.Sprintf(format, args...)})
}

// text writes the pipeline in the language (unformatted).
func (p *pipeline) text() string {
	var b strings.Builder
	for _, h := range p.header {
		fmt.Fprintf(&b, "// %s\n", h)
	}
	if len(p.envs) > 0 {
		b.WriteString("//\n// Set before running:\n")
		keys := sortedKeys(p.envs)
		for _, k := range keys {
			fmt.Fprintf(&b, "//   %s: %s\n", k, p.envs[k])
		}
	}
	if len(p.notes) > 0 {
		b.WriteString("//\n// Not carried over as it was:\n")
		for _, n := range p.notes {
			for i, l := range wrap(n.String(), 92) {
				if i == 0 {
					fmt.Fprintf(&b, "//   - %s\n", l)
				} else {
					fmt.Fprintf(&b, "//     %s\n", l)
				}
			}
		}
	}
	fmt.Fprintf(&b, "pipeline %s {\n", p.name)
	if p.delivery != "" {
		fmt.Fprintf(&b, "delivery = %s\n", p.delivery)
	}
	if p.tasks > 1 {
		fmt.Fprintf(&b, "tasks = %d\n", p.tasks)
	}
	b.WriteString("}\n")
	var all []*stage
	for _, c := range p.chains {
		all = append(all, c.source)
		all = append(all, c.transforms...)
		if c.sink != nil {
			all = append(all, c.sink)
		}
	}
	all = append(all, p.extra...)
	for _, s := range all {
		b.WriteString("\n")
		for _, l := range s.originComment() {
			fmt.Fprintf(&b, "// %s\n", l)
		}
		fmt.Fprintf(&b, "%s %s: %s {\n", s.kind, s.name, s.component)
		for _, a := range s.attrs {
			if strings.HasPrefix(a.value, ":=") {
				fmt.Fprintf(&b, "%s %s\n", a.name, a.value)
			} else {
				fmt.Fprintf(&b, "%s = %s\n", a.name, a.value)
			}
		}
		for _, l := range s.body {
			b.WriteString(l + "\n")
		}
		if s.onError != "" {
			fmt.Fprintf(&b, "on_error = %s\n", s.onError)
		}
		b.WriteString("}\n")
	}
	b.WriteString("\n")
	for _, c := range p.chains {
		names := []string{c.source.name}
		for _, t := range c.transforms {
			names = append(names, t.name)
		}
		if c.sink != nil {
			names = append(names, c.sink.name)
		}
		if len(names) > 1 {
			b.WriteString(strings.Join(names, " -> ") + "\n")
		}
	}
	for _, f := range p.flows {
		b.WriteString(f + "\n")
	}
	return b.String()
}

func wrap(s string, width int) []string {
	var out []string
	for len(s) > width {
		i := strings.LastIndexByte(s[:width], ' ')
		if i <= 0 {
			break
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
	return append(out, s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// quote writes s as a string literal whose value is s exactly: a $ is
// escaped, so that nothing in it reads as a reference.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\', '$':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// connectRef matches a Kafka Connect config provider reference that pipe
// resolves the same way: ${env:NAME} and ${file:path:key}.
var connectRef = regexp.MustCompile(`^\$\{(env|file):[^}]+\}$`)

// value writes a config value as a string literal, keeping a whole-value
// ${env:…} or ${file:…:…} reference as a reference. ok is false for a
// reference of another provider (vault, directory…), which the caller
// replaces.
func value(s string) (lit string, ok bool) {
	if connectRef.MatchString(s) {
		return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`, true
	}
	if strings.Contains(s, "${") && strings.Contains(s, "}") {
		return quote(s), false
	}
	return quote(s), true
}

// quoteRefs writes s as a string literal keeping the references in it.
func quoteRefs(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// list splits a comma-separated config value.
func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// millis writes a number of milliseconds as a duration literal.
func millis(s string) (string, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return "", fmt.Errorf("%q is not a number of milliseconds", s)
	}
	switch {
	case n == 0:
		return "0s", nil
	case n%3600000 == 0:
		return fmt.Sprintf("%dh", n/3600000), nil
	case n%60000 == 0:
		return fmt.Sprintf("%dm", n/60000), nil
	case n%1000 == 0:
		return fmt.Sprintf("%ds", n/1000), nil
	}
	return fmt.Sprintf("%dms", n), nil
}

var nonIdent = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// ident turns s into an identifier of the language.
func ident(s string) string {
	s = strings.Trim(nonIdent.ReplaceAllString(s, "_"), "_")
	if s == "" {
		return "x"
	}
	if s[0] >= '0' && s[0] <= '9' {
		s = "c_" + s
	}
	return strings.ToLower(s)
}

// envName turns s into an environment variable name.
func envName(parts ...string) string {
	return strings.ToUpper(ident(strings.Join(parts, "_")))
}

// field writes a field name for an expression: a plain name as it is,
// another one quoted through the record's map form is not possible, so
// ok is false.
func field(name string) (string, bool) {
	if name != "" && nonIdent.FindStringIndex(name) == nil && !(name[0] >= '0' && name[0] <= '9') {
		return name, true
	}
	return "", false
}
