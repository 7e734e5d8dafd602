package exec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Secrets resolves one secret reference: ${provider:ref}.
type Secrets interface {
	Resolve(provider, ref string) (string, error)
}

// EnvFileSecrets is the default Secrets: ${env:NAME} reads an environment
// variable; ${file:path} reads a whole file (trailing newline removed);
// ${file:path:key} reads key from a Java-properties-style file of key=value
// (or key: value) lines. Errors name the reference, never its value.
type EnvFileSecrets struct {
	// LookupEnv defaults to os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// ReadFile defaults to os.ReadFile.
	ReadFile func(string) ([]byte, error)
}

// Resolve implements Secrets.
func (s EnvFileSecrets) Resolve(provider, ref string) (string, error) {
	lookup, read := s.LookupEnv, s.ReadFile
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if read == nil {
		read = os.ReadFile
	}
	switch provider {
	case "env":
		v, ok := lookup(ref)
		if !ok {
			return "", fmt.Errorf("environment variable %q is not set", ref)
		}
		return v, nil
	case "file":
		if data, err := read(ref); err == nil {
			return strings.TrimRight(string(data), "\r\n"), nil
		} else if !errors.Is(err, os.ErrNotExist) || !strings.Contains(ref, ":") {
			return "", fmt.Errorf("reading secret file %q: %w", ref, unwrapPath(err))
		}
		i := strings.LastIndexByte(ref, ':')
		path, key := ref[:i], ref[i+1:]
		data, err := read(path)
		if err != nil {
			return "", fmt.Errorf("reading secret file %q: %w", path, unwrapPath(err))
		}
		v, ok := propertiesValue(data, key)
		if !ok {
			return "", fmt.Errorf("secret file %q has no key %q", path, key)
		}
		return v, nil
	}
	return "", fmt.Errorf("unknown secret provider %q", provider)
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// propertiesValue finds key in a properties file: key=value or key: value
// lines, # and ! comments, surrounding blanks trimmed.
func propertiesValue(data []byte, key string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			continue
		}
		if strings.TrimSpace(line[:i]) == key {
			return strings.TrimSpace(line[i+1:]), true
		}
	}
	return "", false
}

// redactingSecrets adds every value its Secrets resolves to a Redactor.
type redactingSecrets struct {
	Secrets
	red *Redactor
}

func (s redactingSecrets) Resolve(provider, ref string) (string, error) {
	v, err := s.Secrets.Resolve(provider, ref)
	if err == nil {
		s.red.Add(v, "${"+provider+":"+ref+"}")
	}
	return v, err
}

// expandSecrets replaces every ${provider:ref} in s. A reference in the
// user-info of a URL (scheme://user:${env:PW}@host) is percent-encoded, so
// that the value may hold any character.
func expandSecrets(s string, sec Secrets) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", errors.New("unterminated secret reference")
		}
		ref := s[i+2 : i+j]
		provider, name, ok := strings.Cut(ref, ":")
		if !ok {
			return "", fmt.Errorf("secret reference %q has no provider", ref)
		}
		v, err := sec.Resolve(provider, name)
		if err != nil {
			return "", err
		}
		b.WriteString(s[:i])
		s = s[i+j+1:]
		if inUserinfo(b.String(), s) {
			v = url.User(v).String()
		}
		b.WriteString(v)
	}
}

// inUserinfo reports whether a reference between before (expanded) and after
// (still holding references) stands in the user-info of a URL: after the
// scheme's "//" with no "/", "?", "#" or "@" yet, and followed by an "@"
// before the authority ends.
func inUserinfo(before, after string) bool {
	i := strings.Index(before, "://")
	if i < 0 || strings.ContainsAny(before[i+3:], "/?#@") {
		return false
	}
	for after != "" {
		if rest, ok := strings.CutPrefix(after, "${"); ok {
			_, after, _ = strings.Cut(rest, "}")
			continue
		}
		switch after[0] {
		case '@':
			return true
		case '/', '?', '#':
			return false
		}
		after = after[1:]
	}
	return false
}

// ExpandSecrets resolves every ${provider:ref} in s with sec (nil:
// EnvFileSecrets) and adds each value to red (when not nil), so that it is
// redacted wherever red is used.
func ExpandSecrets(s string, sec Secrets, red *Redactor) (string, error) {
	if sec == nil {
		sec = EnvFileSecrets{}
	}
	if red != nil {
		sec = redactingSecrets{sec, red}
	}
	return expandSecrets(s, sec)
}
