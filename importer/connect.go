package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Remote says how to reach a running Kafka Connect REST API.
type Remote struct {
	URL string // the worker's REST address, http://host:8083
	// User and Password are sent as HTTP basic authentication when User
	// is set. They never appear in an error.
	User, Password string
	Client         *http.Client // nil: http.DefaultClient
}

// maxBody bounds what one answer of the REST API may hold.
const maxBody = 64 << 20

// FetchConnectors reads every connector of a Kafka Connect cluster:
// GET /connectors?expand=info, or, from a worker that does not expand
// (before Kafka 2.3), GET /connectors and GET /connectors/NAME/config for
// each.
func FetchConnectors(ctx context.Context, r Remote) ([]Connector, error) {
	base, err := url.Parse(strings.TrimRight(r.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("--connect: %q is not an http(s) URL", redact(r.URL))
	}
	if base.User != nil { // credentials in the URL: used, never shown
		if r.User == "" {
			r.User = base.User.Username()
			r.Password, _ = base.User.Password()
		}
		base.User = nil
	}
	shown := base.String()
	data, err := r.get(ctx, base, "/connectors", "expand=info")
	if err != nil {
		return nil, err
	}
	var probe any
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s/connectors: %w", shown, err)
	}
	if names, ok := probe.([]any); ok { // expand is not supported: names only
		var out []Connector
		for _, n := range names {
			name, ok := n.(string)
			if !ok {
				return nil, fmt.Errorf("%s/connectors: a connector name is a JSON %T", shown, n)
			}
			cfg, err := r.get(ctx, base, "/connectors/"+url.PathEscape(name)+"/config", "")
			if err != nil {
				return nil, err
			}
			cs, err := Load(shown+"/connectors/"+name, cfg)
			if err != nil {
				return nil, err
			}
			for i := range cs {
				cs[i].Name = name
			}
			out = append(out, cs...)
		}
		return out, nil
	}
	if m, ok := probe.(map[string]any); ok && len(m) == 0 {
		return nil, nil
	}
	return Load(shown+"/connectors", data)
}

func (r Remote) get(ctx context.Context, base *url.URL, path, query string) ([]byte, error) {
	u := *base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if r.User != "" {
		req.SetBasicAuth(r.User, r.Password)
	}
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named below, without credentials
		}
		return nil, fmt.Errorf("GET %s: %v", u.String(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", u.String(), err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		var e struct{ Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return nil, fmt.Errorf("GET %s: %s: %s", u.String(), resp.Status, msg)
	}
	return body, nil
}

// redact drops the user-info of a URL that may carry a password.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return "…" + s[i:]
	}
	return s
}
