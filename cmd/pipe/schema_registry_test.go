package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"pipe.dev/pipe/internal/proctest"
	"pipe.dev/pipe/stdlib/avro"
)

// pipe schema pull writes a subject's schema and the one it references
// (named by the type's full name); the files parse as the schema pipe
// types it from, the referencing one with its reference.
func TestSchemaPull(t *testing.T) {
	reg, cl := devRegistry(t)
	addr := `{"type":"record","name":"Address","namespace":"registry","fields":[{"name":"city","type":"string"}]}`
	if _, err := cl.CreateSchema(t.Context(), "registry-address", sr.Schema{Schema: addr, Type: sr.TypeAvro}); err != nil {
		t.Fatal(err)
	}
	cust := `{"type":"record","name":"Customer","namespace":"registry","fields":[{"name":"id","type":"long"},{"name":"home","type":"registry.Address"}]}`
	if _, err := cl.CreateSchema(t.Context(), "registry-customer-value", sr.Schema{Schema: cust, Type: sr.TypeAvro,
		References: []sr.SchemaReference{{Name: "registry.Address", Subject: "registry-address", Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"schema", "pull", "--registry", reg.URL(), "--subject", "registry-customer-value", "-o", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, f := range []string{"registry.Address.avsc", "registry-customer-value.avsc"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("output does not name %s: %s", f, out.String())
		}
	}
	ty, err := avro.LoadFile(filepath.Join(dir, "registry-customer-value.avsc"), os.ReadFile)
	if err != nil || ty.String() != "{id: int, home: {city: string}}" {
		t.Errorf("pulled schema with its reference types as %v, %v", ty, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "registry.Address.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := avro.ParseSchema(b)
	if err != nil {
		t.Fatal(err)
	}
	if ty, err := avro.TypeOf(s); err != nil || ty.String() != "{city: string}" {
		t.Errorf("pulled schema types as %v, %v", ty, err)
	}
	if code := run([]string{"schema", "pull", "--registry", reg.URL(), "--subject", "registry-nope", "-o", dir}, nil, &out, &errb); code == exitOK || !strings.Contains(errb.String(), "registry-nope") {
		t.Errorf("missing subject: exit %d, %s", code, errb.String())
	}
}

// pipe broker --schema-registry serves a registry beside the broker.
func TestBrokerSchemaRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	bin := proctest.BuildPipe(t)
	proctest.StartBroker(t, bin, 1, "--schema-registry", "--registry-port", strconv.Itoa(port))
	cl, err := sr.NewClient(sr.URLs(fmt.Sprintf("http://127.0.0.1:%d", port)))
	if err != nil {
		t.Fatal(err)
	}
	var ss sr.SubjectSchema
	for i := 0; ; i++ {
		ss, err = cl.CreateSchema(t.Context(), "registry-broker-value", sr.Schema{Schema: `"string"`, Type: sr.TypeAvro})
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || ss.ID != 1 {
		t.Fatalf("register with the broker's registry: %+v %v", ss, err)
	}
}
