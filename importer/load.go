package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Connector is one Kafka Connect connector configuration.
type Connector struct {
	Name   string
	Config map[string]string
	// From is where it was read: a file name, with the connector's place
	// in it when the file holds several.
	From string
}

// Class returns the connector class without its package
// (JdbcSourceConnector), or "".
func (c *Connector) Class() string {
	cl := c.Config["connector.class"]
	if i := strings.LastIndexByte(cl, '.'); i >= 0 {
		cl = cl[i+1:]
	}
	if cl != "" && !strings.HasSuffix(cl, "Connector") {
		cl += "Connector" // Kafka Connect takes the alias without the suffix
	}
	return cl
}

// Load reads the connectors of one configuration file: the REST form
// ({"name": …, "config": {…}}), a bare config object, an array of either,
// the object `GET /connectors?expand=info` returns, or the standalone
// .properties form.
func Load(name string, data []byte) ([]Connector, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return loadJSON(name, trimmed)
	}
	cfg, err := parseProperties(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(cfg) == 0 {
		return nil, fmt.Errorf("%s: no connector configuration found", name)
	}
	c := Connector{Name: cfg["name"], Config: cfg, From: name}
	if c.Name == "" {
		base := filepath.Base(name)
		c.Name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	return []Connector{c}, nil
}

func loadJSON(name string, data []byte) ([]Connector, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []Connector
	var add func(v any, where string) error
	add = func(v any, where string) error {
		switch v := v.(type) {
		case []any:
			for i, e := range v {
				if err := add(e, fmt.Sprintf("%s[%d]", where, i)); err != nil {
					return err
				}
			}
			return nil
		case map[string]any:
			if cfg, ok := v["config"].(map[string]any); ok { // REST form
				c, err := connectorOf(cfg, where)
				if err != nil {
					return err
				}
				if n, ok := v["name"].(string); ok && n != "" {
					c.Name = n
				}
				out = append(out, c)
				return nil
			}
			if _, ok := v["connector.class"]; ok { // a bare config object
				c, err := connectorOf(v, where)
				if err != nil {
					return err
				}
				out = append(out, c)
				return nil
			}
			// GET /connectors?expand=info: {"name": {"info": {...}, "status": {...}}}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			found := false
			for _, k := range keys {
				if e, ok := v[k].(map[string]any); ok {
					if info, ok := e["info"].(map[string]any); ok {
						if err := add(info, where+"."+k); err != nil {
							return err
						}
						found = true
					}
				}
			}
			if !found {
				return fmt.Errorf("%s: not a connector configuration (no connector.class, config or info)", where)
			}
			return nil
		}
		return fmt.Errorf("%s: not a connector configuration (a JSON %T)", where, v)
	}
	if err := add(v, name); err != nil {
		return nil, err
	}
	if len(out) > 1 {
		for i := range out {
			if out[i].From == name {
				out[i].From = fmt.Sprintf("%s[%d]", name, i)
			}
		}
	}
	return out, nil
}

func connectorOf(cfg map[string]any, where string) (Connector, error) {
	c := Connector{Config: map[string]string{}, From: where}
	for k, v := range cfg {
		switch v := v.(type) {
		case string:
			c.Config[k] = v
		case json.Number:
			c.Config[k] = v.String()
		case bool:
			c.Config[k] = fmt.Sprint(v)
		case nil:
		default:
			return c, fmt.Errorf("%s: %s: a config value is a string, not a JSON %T", where, k, v)
		}
	}
	c.Name = c.Config["name"]
	if c.Name == "" {
		base := filepath.Base(where)
		c.Name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	return c, nil
}

// parseProperties reads the java.util.Properties text format: key=value,
// key:value or key value; # and ! comments; a trailing backslash continues
// a line; \t \n \r \f \uXXXX and \<char> escapes.
func parseProperties(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var logical strings.Builder
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimLeft(sc.Text(), " \t\f")
		if logical.Len() == 0 && (line == "" || line[0] == '#' || line[0] == '!') {
			continue
		}
		// A line ending in an odd number of backslashes continues.
		n := 0
		for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
			n++
		}
		if n%2 == 1 {
			logical.WriteString(line[:len(line)-1])
			continue
		}
		logical.WriteString(line)
		k, v, err := splitProperty(logical.String())
		logical.Reset()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		out[k] = v
	}
	if logical.Len() > 0 {
		k, v, err := splitProperty(logical.String())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		out[k] = v
	}
	return out, sc.Err()
}

func splitProperty(s string) (string, string, error) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '\\' {
			i += 2
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			break
		}
		i++
	}
	key := s[:min(i, len(s))]
	rest := s[min(i, len(s)):]
	rest = strings.TrimLeft(rest, " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = strings.TrimLeft(rest[1:], " \t\f")
	}
	k, err := unescape(key)
	if err != nil {
		return "", "", err
	}
	v, err := unescape(rest)
	return k, v, err
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("malformed \\u escape in %q", s)
			}
			var r rune
			if _, err := fmt.Sscanf(s[i+1:i+5], "%04x", &r); err != nil {
				return "", fmt.Errorf("malformed \\u escape in %q", s)
			}
			b.WriteRune(r)
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}
