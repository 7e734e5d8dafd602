package importer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"pipe.dev/pipe/importer"
)

// connectServer serves the recorded answers of testdata/connect as a
// Kafka Connect worker does; expand says whether it knows ?expand=info
// (Kafka 2.3+). With user set it asks for basic authentication.
func connectServer(t *testing.T, expand bool, user, pass string) (*httptest.Server, *[]string) {
	t.Helper()
	var paths []string
	file := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join("testdata", "connect", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.RequestURI())
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"error_code":401,"message":"Unauthorized"}`))
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/connectors" && expand && r.URL.Query().Get("expand") == "info":
			w.Write(file("expand_info.json"))
		case r.URL.Path == "/connectors":
			w.Write(file("names.json"))
		case strings.HasPrefix(r.URL.Path, "/connectors/") && strings.HasSuffix(r.URL.Path, "/config"):
			name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/connectors/"), "/config")
			data, err := os.ReadFile(filepath.Join("testdata", "connect", "config_"+name+".json"))
			if err != nil {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"error_code":404,"message":"Connector ` + name + ` not found"}`))
				return
			}
			w.Write(data)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &paths
}

func names(cs []importer.Connector) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+"="+c.Class()+" topics="+c.Config["topics"]+c.Config["topic.prefix"])
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

const wantConnectors = "local-file-sink=FileStreamSinkConnector topics=connect-test; pg-orders=JdbcSourceConnector topics=pg-"

// TestFetchConnectors reads every connector of a worker that expands
// (one request) and of one that does not (the names, then each config),
// and converts them; both give the same connectors.
func TestFetchConnectors(t *testing.T) {
	for _, expand := range []bool{true, false} {
		srv, paths := connectServer(t, expand, "", "")
		cs, err := importer.FetchConnectors(context.Background(), importer.Remote{URL: srv.URL + "/"})
		if err != nil {
			t.Fatalf("expand=%v: %v", expand, err)
		}
		if got := names(cs); got != wantConnectors {
			t.Errorf("expand=%v: got %s, want %s", expand, got, wantConnectors)
		}
		wantReqs := "/connectors?expand=info"
		if !expand {
			wantReqs += " /connectors/local-file-sink/config /connectors/pg-orders/config"
		}
		if got := strings.Join(*paths, " "); got != wantReqs {
			t.Errorf("expand=%v: requests %s, want %s", expand, got, wantReqs)
		}
		files, err := importer.Convert(cs, importer.Options{HasComponent: has})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 {
			t.Fatalf("expand=%v: %d pipelines, want 2", expand, len(files))
		}
		all := files[0].Text + files[1].Text
		for _, want := range []string{`path = "test.sink.txt"`, "${file:/etc/kafka/secrets.properties:pg}", `topic = "pg-orders"`} {
			if !strings.Contains(all, want) {
				t.Errorf("expand=%v: the pipelines lack %s:\n%s", expand, want, all)
			}
		}
	}
}

// TestFetchConnectorsAuth: the credentials reach the worker as basic
// authentication, from the fields or the URL, and never an error.
func TestFetchConnectorsAuth(t *testing.T) {
	srv, _ := connectServer(t, true, "admin", "s3cret-connect")
	_, err := importer.FetchConnectors(context.Background(), importer.Remote{URL: srv.URL, User: "admin", Password: "wrong-pass"})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a wrong password: %v, want a 401 error", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("the error shows the password: %v", err)
	}
	cs, err := importer.FetchConnectors(context.Background(), importer.Remote{URL: srv.URL, User: "admin", Password: "s3cret-connect"})
	if err != nil || names(cs) != wantConnectors {
		t.Fatalf("with the credentials: %v, %s", err, names(cs))
	}
	withInfo := strings.Replace(srv.URL, "http://", "http://admin:s3cret-connect@", 1)
	if cs, err = importer.FetchConnectors(context.Background(), importer.Remote{URL: withInfo}); err != nil || names(cs) != wantConnectors {
		t.Fatalf("with the credentials in the URL: %v, %s", err, names(cs))
	}
	srv.Close()
	_, err = importer.FetchConnectors(context.Background(), importer.Remote{URL: withInfo})
	if err == nil {
		t.Fatal("a closed server: no error")
	}
	if strings.Contains(err.Error(), "s3cret-connect") {
		t.Errorf("the error shows the URL's password: %v", err)
	}
}
