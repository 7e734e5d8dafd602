package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/stdlib"
)

func TestRedactor(t *testing.T) {
	var r Redactor
	r.Add("hunter22", "${env:PW}")
	r.Add("p@ss/w#rd x", "${env:ODD}")
	r.Add("abc", "${env:SHORT}")
	r.Add("", "${env:EMPTY}")
	r.Add(" ", "${env:BLANK}")
	r.Add("postgres://app:dsn%2Fpw@db/x", "${env:DSN}")
	r.Add("host=db password='kv pw\\'s' dbname=x", "${file:/s:kv}")
	r.Add("hunter22 and more", "${env:LONGER}")
	for _, c := range []struct{ in, want string }{
		{"table x.hunter22.y", "table x.${env:PW}.y"},
		{"hunter22hunter22", "${env:PW}${env:PW}"},
		{"longest wins: hunter22 and more", "longest wins: ${env:LONGER}"},
		{`quoted "p@ss/w#rd x"`, `quoted "${env:ODD}"`},
		{"query p%40ss%2Fw%23rd+x path p@ss%2Fw%23rd%20x userinfo p%40ss%2Fw%23rd%20x", "query ${env:ODD} path ${env:ODD} userinfo ${env:ODD}"},
		{`%q "hunter22\"" keeps`, `%q "${env:PW}\"" keeps`},
		// Short values only as whole words.
		{"abc, xabc, abcd, a_abc, (abc)", "${env:SHORT}, xabc, abcd, a_abc, (${env:SHORT})"},
		{"abc", "${env:SHORT}"},
		// A connection string's password, decoded, on its own.
		{"password dsn/pw rejected", "password ${env:DSN} rejected"},
		{"password kv pw's rejected", "password ${file:/s:kv} rejected"},
		{"nothing here + there", "nothing here + there"},
		{"", ""},
	} {
		if got := r.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	var none *Redactor
	if got := none.Redact("hunter22"); got != "hunter22" {
		t.Errorf("a nil Redactor changed %q", got)
	}
}

func TestRedactorError(t *testing.T) {
	var r Redactor
	r.Add("hunter22", "${env:PW}")
	plain := errors.New("no secret")
	if r.Error(plain) != plain || r.Error(nil) != nil {
		t.Fatal("an error without a secret was replaced")
	}
	inner := fmt.Errorf("auth hunter22: %w", context.DeadlineExceeded)
	err := r.Error(fmt.Errorf("open: %w", inner))
	if err.Error() != "open: auth ${env:PW}: context deadline exceeded" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %q (is deadline: %v)", err, errors.Is(err, context.DeadlineExceeded))
	}
	err = r.Error(&StageError{Stage: "s", At: "f:1", Err: inner})
	var se *StageError
	if !errors.As(err, &se) || se.Err.Error() != "auth ${env:PW}: context deadline exceeded" || se.Stage != "s" {
		t.Fatalf("got %#v", err)
	}
}

func TestRedactorHandler(t *testing.T) {
	var r Redactor
	r.Add("hunter22", "${env:PW}")
	r.Add("42", "${env:N}")
	var buf bytes.Buffer
	log := slog.New(r.Handler(slog.NewTextHandler(&buf, nil)))
	log = slog.New(r.Handler(log.Handler())) // wrapping twice redacts once
	log.With("dsn", "x:hunter22").WithGroup("g").Info("login hunter22", "err", errors.New("bad hunter22"),
		"n", 42, "list", []string{"hunter22"}, slog.Group("sub", "pw", "hunter22"), "ok", 7)
	got := buf.String()
	want := `msg="login ${env:PW}" dsn=x:${env:PW} g.err="bad ${env:PW}" g.n=${env:N} g.list=[${env:PW}] g.sub.pw=${env:PW} g.ok=7`
	if !strings.Contains(got, want) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// leakySink writes its token attribute into everything it can: a log line
// at Open, its Open error (attribute fail_open), the error of each record
// whose id is odd, and a Write error (attribute fail_write).
type leakySink struct{ cfg stdlib.Config }

func (s *leakySink) Open(ctx context.Context) ([]stdlib.Position, error) {
	tok := s.cfg.String("token")
	s.cfg.Logger.Info("connecting with "+tok, "token", tok)
	if s.cfg.Bool("fail_open") {
		return nil, fmt.Errorf("token %q refused", tok)
	}
	return nil, nil
}

func (s *leakySink) Write(ctx context.Context, b []stdlib.Record) error {
	if s.cfg.Bool("fail_write") {
		return fmt.Errorf("write with token %s failed", s.cfg.String("token"))
	}
	var errs stdlib.RecordErrors
	for i, r := range b {
		if id := r.Value.(map[string]any)["id"].(int64); id%2 == 1 {
			errs = append(errs, stdlib.RecordError{Index: i, Err: fmt.Errorf("record %d: token %s is not allowed here", id, s.cfg.String("token"))})
		}
	}
	if errs != nil {
		return errs
	}
	return nil
}

func (s *leakySink) Checkpoint(ctx context.Context, cp stdlib.Checkpoint) error { return nil }
func (s *leakySink) Close(ctx context.Context) error                            { return nil }

// TestRunRedacts runs a sink that repeats a secret in its logs, its errors
// and its records' errors: the run's error, every log line and the
// dead-letter envelopes show the reference instead.
func TestRunRedacts(t *testing.T) {
	const secret = "t0ken-Zq7Kx"
	env := newTestEnv(t)
	reg := stdlib.NewRegistry(append(env.reg.Specs(""), &stdlib.Spec{Kind: stdlib.SinkKind, Name: "leaky",
		NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) { return &leakySink{cfg}, nil }})...)
	secrets := EnvFileSecrets{LookupEnv: func(k string) (string, bool) { return secret, k == "TOKEN" }}
	token := attr("token", &plan.Value{Kind: plan.SecretValue, Str: "prefix-${env:TOKEN}"})
	for _, c := range []struct {
		name    string
		sink    stageOpt
		wantErr string
	}{
		{"dead letters", onError(&plan.ErrorPolicy{Action: "dead_letter", Target: "dlq"}), ""},
		{"open fails", attr("fail_open", bval(true)), `token "prefix-${env:TOKEN}" refused`},
		{"write fails", attr("fail_write", bval(true)), `stage "out": write with token prefix-${env:TOKEN} failed`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPlan(time.Second, []*plan.Stage{
				stage("src", "source", "mem", 1, attr("count", ival(6))),
				stage("out", "sink", "leaky", 10, token, c.sink),
				stage("dlq", "sink", "memsink", 20),
			}, edge("src", "out"), dlqEdge("out", "dlq"))
			var logs bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := Run(ctx, p, &Config{Registry: reg, StateDir: t.TempDir(), Secrets: secrets,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("Run = %v, want error %q", err, c.wantErr)
			}
			out := []string{logs.String()}
			if err != nil {
				out = append(out, err.Error())
				var se *StageError
				if errors.As(err, &se) {
					out = append(out, se.Err.Error())
				}
			}
			dl := env.output("dlq")
			for _, r := range dl {
				out = append(out, fmt.Sprint(r.Value))
			}
			if c.name == "dead letters" && (len(dl) != 3 || !strings.Contains(fmt.Sprint(dl[0].Value), "token prefix-${env:TOKEN} is not allowed")) {
				t.Errorf("dead letters %v", dl)
			}
			if !strings.Contains(logs.String(), `"msg":"connecting with prefix-${env:TOKEN}","stage":"out","task":0,"token":"prefix-${env:TOKEN}"`) {
				t.Errorf("logs do not show the reference:\n%s", logs.String())
			}
			for _, o := range out {
				if strings.Contains(o, secret) {
					t.Errorf("the secret shows in %s", o)
				}
			}
		})
	}
}

// Secrets are resolved before any component is built: a logger made then
// already redacts every one.
func TestRunResolvesSecretsFirst(t *testing.T) {
	env := newTestEnv(t)
	var logs bytes.Buffer
	reg := stdlib.NewRegistry(append(env.reg.Specs(""), &stdlib.Spec{Kind: stdlib.SinkKind, Name: "leaky",
		NewSink: func(cfg stdlib.Config) (stdlib.Sink, error) {
			cfg.Logger = cfg.Logger.With("later", "LATER-secret")
			return &leakySink{cfg}, nil
		}})...)
	secrets := EnvFileSecrets{LookupEnv: func(k string) (string, bool) { return strings.ToUpper(k) + "-secret", true }}
	p := newPlan(time.Second, []*plan.Stage{
		stage("src", "source", "mem", 1, attr("count", ival(1))),
		stage("a", "sink", "leaky", 10, attr("token", &plan.Value{Kind: plan.SecretValue, Str: "${env:early}"})),
		stage("b", "sink", "memsink", 20, attr("x", &plan.Value{Kind: plan.SecretValue, Str: "${env:later}"})),
	}, edge("src", "a"), edge("src", "b"))
	if err := Run(t.Context(), p, &Config{Registry: reg, StateDir: t.TempDir(), Secrets: secrets,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "-secret") || !strings.Contains(logs.String(), "later=${env:later}") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}
