package httpconn

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// tlsParam is the tls block of the sink and the polling source (a client:
// ca verifies the server, cert and key are the client certificate of
// mTLS) and of the server source (cert and key are the server's, ca
// verifies client certificates, which are then required).
var tlsParam = stdlib.Param{Name: "tls", Type: stdlib.Block(
	stdlib.Param{Name: "ca", Type: stdlib.String, Doc: "CA certificates: a PEM file path or PEM text (client: to verify the server; server: to require and verify client certificates)"},
	stdlib.Param{Name: "cert", Type: stdlib.String, Doc: "certificate: a PEM file path or PEM text (client: for mTLS; server: the server's)"},
	stdlib.Param{Name: "key", Type: stdlib.String, Secret: true, Doc: "the certificate's key: a PEM file path or PEM text"},
	stdlib.Param{Name: "server_name", Type: stdlib.String, Doc: "client: name to verify the server certificate against"},
	stdlib.Param{Name: "insecure_skip_verify", Type: stdlib.Bool, Default: false, Doc: "client: do not verify the server certificate (unsafe)"},
), Doc: "TLS; with cert and key on a client, mutual TLS"}

// authParams are the credentials a client sends and a server requires.
var authParams = []stdlib.Param{
	{Name: "bearer_token", Type: stdlib.String, Secret: true, Doc: "Authorization: Bearer token (client: sent; server: required)"},
	{Name: "basic_auth", Type: stdlib.Block(
		stdlib.Param{Name: "username", Type: stdlib.String, Required: true},
		stdlib.Param{Name: "password", Type: stdlib.String, Required: true, Secret: true},
	), Doc: "HTTP basic authentication (client: sent; server: required)"},
}

// checkAuth reports bearer_token and basic_auth set together.
func checkAuth(attrs map[string]any) []stdlib.AttrError {
	if _, ok := attrs["bearer_token"]; ok {
		if _, ok := attrs["basic_auth"]; ok {
			return []stdlib.AttrError{{Attr: "basic_auth", Message: "bearer_token and basic_auth exclude each other"}}
		}
	}
	return nil
}

// auth is a resolved bearer_token or basic_auth.
type auth struct {
	bearer     string
	user, pass string
	basic      bool
}

func newAuth(cfg stdlib.Config) auth {
	a := auth{bearer: cfg.String("bearer_token")}
	if b, ok := cfg.Block("basic_auth"); ok {
		a.user, a.pass, a.basic = b.String("username"), b.String("password"), true
	}
	return a
}

// set adds the credentials to a request.
func (a auth) set(req *http.Request) {
	switch {
	case a.bearer != "":
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	case a.basic:
		req.SetBasicAuth(a.user, a.pass)
	}
}

// allows reports whether a request carries the credentials (compared in
// constant time).
func (a auth) allows(req *http.Request) bool {
	switch {
	case a.bearer != "":
		h := req.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(a.bearer)) == 1
	case a.basic:
		u, p, ok := req.BasicAuth()
		return ok && subtle.ConstantTimeCompare([]byte(u), []byte(a.user))&
			subtle.ConstantTimeCompare([]byte(p), []byte(a.pass)) == 1
	}
	return true
}

// checkStatus reports a status code attribute outside [lo, hi].
func checkStatus(attr string, v any, lo, hi int64) []stdlib.AttrError {
	n, ok := v.(int64)
	if ok && (n < lo || n > hi) {
		return []stdlib.AttrError{{Attr: attr, Message: fmt.Sprintf("%s must be an HTTP status code from %d to %d, not %d", attr, lo, hi, n)}}
	}
	return nil
}

// methods are the request methods the components take.
var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

// checkMethod reports a method that is not one of methods.
func checkMethod(attr string, v any) []stdlib.AttrError {
	m, ok := v.(string)
	if !ok || strings.HasPrefix(m, "${") {
		return nil
	}
	for _, x := range methods {
		if m == x {
			return nil
		}
	}
	return []stdlib.AttrError{{Attr: attr, Message: fmt.Sprintf("method %q is not one of %s", m, strings.Join(methods, ", "))}}
}

// checkClient checks what the sink and the polling source share: url,
// credentials, retry_timeout.
func checkClient(attrs map[string]any) []stdlib.AttrError {
	errs := append(retry.Check(attrs), checkAuth(attrs)...)
	if u, ok := attrs["url"].(string); ok && !strings.Contains(u, "${") {
		if err := checkURL(u); err != nil {
			errs = append(errs, stdlib.AttrError{Attr: "url", Message: err.Error()})
		}
	}
	return errs
}
