package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"pipe.dev/pipe/compiler"
	"pipe.dev/pipe/importer"
	"pipe.dev/pipe/lang/format"
	"pipe.dev/pipe/stdlib"
)

func cmdImport(e *env, args []string) int {
	fs := newFlags(e, "import", "CONFIG... | --connect URL", `Write .pipe files from Kafka Connect connector configs: the REST form ({"name", "config"}),
a bare config object, an array of them, the answer of GET /connectors?expand=info, or a
standalone .properties file. Each file is formatted and checked; what a connector sets that
the pipeline does not carry over is listed at the file's top and on standard error.
With one pipeline and no -o it is printed on standard output. --connect reads every connector
of a running Kafka Connect cluster from its REST API; its basic-auth credentials come from
--connect-user (or PIPE_CONNECT_USER) and PIPE_CONNECT_PASSWORD, or the URL's user-info.`)
	out := fs.StringP("output", "o", "", "write to this file (one pipeline) or directory (one file a pipeline)")
	joinFlag := fs.Bool("join", false, "join a source connector and a sink connector that share a topic into one pipeline, without Kafka between them")
	strict := fs.Bool("strict", false, "fail (exit 1) when any config key is not carried over as it was, naming each")
	connect := fs.String("connect", "", "read every connector from the Kafka Connect REST API at this URL (http://host:8083)")
	connectUser := fs.String("connect-user", os.Getenv("PIPE_CONNECT_USER"), "user for the REST API's basic authentication (the password is read from $PIPE_CONNECT_PASSWORD)")
	if code, ok := parseFlags(fs, args, func(n int) bool { return n > 0 || *connect != "" }); !ok {
		return code
	}
	var conns []importer.Connector
	if *connect != "" {
		cs, err := importer.FetchConnectors(context.Background(), importer.Remote{
			URL: *connect, User: *connectUser, Password: os.Getenv("PIPE_CONNECT_PASSWORD"),
		})
		if err != nil {
			return e.fail(exitFindings, "%v", err)
		}
		if len(cs) == 0 {
			return e.fail(exitFindings, "the Kafka Connect cluster has no connectors")
		}
		conns = append(conns, cs...)
	}
	for _, name := range fs.Args() {
		data, err := os.ReadFile(name)
		if err != nil {
			return e.fail(exitUsage, "%v", err)
		}
		cs, err := importer.Load(name, data)
		if err != nil {
			return e.fail(exitFindings, "%v", err)
		}
		conns = append(conns, cs...)
	}
	files, err := importer.Convert(conns, importer.Options{Join: *joinFlag, HasComponent: func(kind, name string) bool {
		return stdlib.Default.Lookup(stdlib.Kind(kind), name) != nil
	}})
	if err != nil {
		return e.fail(exitFindings, "%v", err)
	}
	if *strict {
		// Every key not carried over as it was is an error: nothing is
		// written.
		n := 0
		for _, f := range files {
			for _, note := range f.Notes {
				if note.Key != "" {
					fmt.Fprintf(e.stderr, "%s: error: %s\n", f.Name+".pipe", note)
					n++
				}
			}
		}
		if n > 0 {
			return e.fail(exitFindings, "--strict: %d config key(s) not carried over as they were", n)
		}
	}
	dir := ""
	switch {
	case *out == "" && len(files) > 1:
		return e.fail(exitUsage, "%d pipelines: name a directory with -o", len(files))
	case *out != "" && (strings.HasSuffix(*out, "/") || isDir(*out) || len(files) > 1):
		dir = *out
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return e.fail(exitUsage, "%v", err)
		}
	}
	code := exitOK
	for _, f := range files {
		path := *out
		if dir != "" {
			path = filepath.Join(dir, f.Name+".pipe")
		}
		name := path
		if name == "" {
			name = f.Name + ".pipe"
		}
		src, diags := format.Source(name, []byte(f.Text))
		if diags.HasErrors() {
			printDiagnostics(e.stderr, "text", diags, sources{name: []byte(f.Text)})
			return exitFindings
		}
		if _, diags := compiler.Compile(&compiler.Config{}, name, src); diags.HasErrors() {
			// A file that does not check is still written, for the user to
			// finish; the diagnostics say what is missing.
			printDiagnostics(e.stderr, "text", diags.Errors(), sources{name: src})
			code = exitFindings
		}
		for _, n := range f.Notes {
			fmt.Fprintf(e.stderr, "%s: %s\n", name, n)
		}
		if path == "" {
			e.stdout.Write(src)
			continue
		}
		if err := os.WriteFile(path, src, 0o644); err != nil {
			return e.fail(exitUsage, "%v", err)
		}
		fmt.Fprintf(e.stdout, "wrote %s\n", path)
	}
	return code
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
