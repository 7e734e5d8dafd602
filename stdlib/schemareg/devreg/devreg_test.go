package devreg

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

func start(t *testing.T) (*Registry, *sr.Client) {
	t.Helper()
	r, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	cl, err := sr.NewClient(sr.URLs(r.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return r, cl
}

const (
	v1 = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}`
	v2 = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":["null","string"],"default":null}]}`
	v3 = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"c","type":"string"}]}`
)

func avro(s string) sr.Schema { return sr.Schema{Schema: s, Type: sr.TypeAvro} }

// Subjects, versions and ids behave as the Confluent registry's: the same
// schema keeps its id across subjects and registrations, versions count
// per subject, and lookups by id, version and schema agree.
func TestSubjectsVersionsIDs(t *testing.T) {
	r, cl := start(t)
	ctx := t.Context()
	a, err := cl.CreateSchema(ctx, "registry-a-value", avro(v1))
	if err != nil {
		t.Fatal(err)
	}
	again, err := cl.CreateSchema(ctx, "registry-a-value", avro(v1))
	if err != nil || again.ID != a.ID || again.Version != 1 {
		t.Fatalf("registering again: %+v %v", again, err)
	}
	b, err := cl.CreateSchema(ctx, "registry-b-value", avro(v1))
	if err != nil || b.ID != a.ID {
		t.Fatalf("same schema under another subject: %+v %v", b, err)
	}
	two, err := cl.CreateSchema(ctx, "registry-a-value", avro(v2))
	if err != nil || two.ID == a.ID || two.Version != 2 {
		t.Fatalf("second version: %+v %v", two, err)
	}
	subs, err := cl.Subjects(ctx)
	if err != nil || strings.Join(subs, ",") != "registry-a-value,registry-b-value" {
		t.Errorf("subjects %v %v", subs, err)
	}
	vs, err := cl.SubjectVersions(ctx, "registry-a-value")
	if err != nil || len(vs) != 2 {
		t.Errorf("versions %v %v", vs, err)
	}
	s, err := cl.SchemaByID(ctx, two.ID)
	if err != nil || s.Schema != v2 {
		t.Errorf("by id: %+v %v", s, err)
	}
	latest, err := cl.SchemaByVersion(ctx, "registry-a-value", -1)
	if err != nil || latest.ID != two.ID || latest.Version != 2 {
		t.Errorf("latest: %+v %v", latest, err)
	}
	found, err := cl.LookupSchema(ctx, "registry-a-value", avro(v1))
	if err != nil || found.Version != 1 {
		t.Errorf("lookup: %+v %v", found, err)
	}
	var re *sr.ResponseError
	if _, err := cl.SchemaByID(ctx, 99); !errors.As(err, &re) || re.ErrorCode != codeSchemaNotFound {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := cl.SchemaByVersion(ctx, "registry-none", 1); !errors.As(err, &re) || re.ErrorCode != codeSubjectNotFound {
		t.Errorf("unknown subject: %v", err)
	}
	if _, err := cl.CreateSchema(ctx, "registry-x", avro(`{"type":"record"}`)); !errors.As(err, &re) || re.ErrorCode != codeInvalidSchema {
		t.Errorf("invalid schema: %v", err)
	}
	resp, err := http.Get(r.URL() + "/subjects/registry-a-value/versions/1/schema")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(raw) != v1 {
		t.Errorf("raw schema %q", raw)
	}
}

// Registration checks compatibility at the subject's level (the global one
// unless set), names the field that breaks, and the check endpoint agrees.
func TestCompatibilityAndConfig(t *testing.T) {
	_, cl := start(t)
	ctx := t.Context()
	if _, err := cl.CreateSchema(ctx, "registry-c-value", avro(v1)); err != nil {
		t.Fatal(err)
	}
	res, err := cl.CheckCompatibility(ctx, "registry-c-value", -1, avro(v3))
	if err != nil || res.Is || len(res.Messages) == 0 || !strings.Contains(res.Messages[0], "field c") {
		t.Errorf("check: %+v %v", res, err)
	}
	_, err = cl.CreateSchema(ctx, "registry-c-value", avro(v3))
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict || !strings.Contains(re.Message, "field c") {
		t.Fatalf("incompatible registration: %v", err)
	}
	// FORWARD: the old schema reads records of the new one, so a new
	// required field is fine.
	rs := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatForward}, "registry-c-value")
	if len(rs) != 1 || rs[0].Err != nil {
		t.Fatalf("set level: %+v", rs)
	}
	got := cl.Compatibility(ctx, "registry-c-value")
	if len(got) != 1 || got[0].Level != sr.CompatForward {
		t.Errorf("level %+v", got)
	}
	if _, err := cl.CreateSchema(ctx, "registry-c-value", avro(v3)); err != nil {
		t.Errorf("FORWARD registration: %v", err)
	}
	global := cl.Compatibility(ctx)
	if len(global) != 1 || global[0].Level != sr.CompatBackward {
		t.Errorf("global level %+v", global)
	}
	rs = cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone})
	if len(rs) != 1 || rs[0].Err != nil {
		t.Errorf("set global: %+v", rs)
	}
}

// A schema may reference another subject's version; it parses with it.
func TestReferences(t *testing.T) {
	_, cl := start(t)
	ctx := t.Context()
	addr := `{"type":"record","name":"Address","namespace":"n","fields":[{"name":"city","type":"string"}]}`
	if _, err := cl.CreateSchema(ctx, "registry-address", avro(addr)); err != nil {
		t.Fatal(err)
	}
	cust := sr.Schema{Type: sr.TypeAvro,
		Schema:     `{"type":"record","name":"Customer","namespace":"n","fields":[{"name":"home","type":"n.Address"}]}`,
		References: []sr.SchemaReference{{Name: "n.Address", Subject: "registry-address", Version: 1}}}
	ss, err := cl.CreateSchema(ctx, "registry-customer", cust)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.SchemaByID(ctx, ss.ID)
	if err != nil || len(got.References) != 1 || got.References[0].Subject != "registry-address" {
		t.Errorf("references: %+v %v", got, err)
	}
	cust.References = nil
	if _, err := cl.CreateSchema(ctx, "registry-customer2", cust); err == nil {
		t.Error("a schema naming an unknown type without its reference was registered")
	}
}
