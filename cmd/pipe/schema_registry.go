package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"pipe.dev/pipe/stdlib/schemareg"
)

func cmdSchemaPull(e *env, args []string) int {
	fs := newFlags(e, "schema pull", "",
		"Write a schema registry subject's schema, and the schemas it references, to files in DIR\n"+
			"(<subject>.avsc for Avro; an Avro reference as <its type's full name>.avsc, where a\n"+
			"schema file's loader finds it), pinned to the version pulled, for `schema X from \"…\"`;\n"+
			"or, with --postgres, the row types of PostgreSQL tables as schemas in <table>.pipe files,\n"+
			"for `import` (the DSN may come from PIPE_POSTGRES_DSN instead).")
	url := fs.String("registry", "", "schema registry URL")
	subject := fs.String("subject", "", "subject to pull")
	version := fs.Int("version", -1, "version to pull (default: the latest)")
	dsn := fs.String("postgres", "", "PostgreSQL connection string (default: $PIPE_POSTGRES_DSN when --table is given)")
	tables := fs.StringArray("table", nil, "with --postgres: a table (schema.table) whose row type to write; repeatable")
	dir := fs.StringP("out", "o", ".", "directory to write to")
	if code, ok := parseFlags(fs, args, nArgs(0)); !ok {
		return code
	}
	if len(*tables) > 0 {
		if *dsn == "" {
			*dsn = os.Getenv("PIPE_POSTGRES_DSN")
		}
		if *dsn == "" || *url != "" {
			fs.Usage()
			return exitUsage
		}
		return pullPostgres(e, *dsn, *tables, *dir)
	}
	if *url == "" || *subject == "" {
		fs.Usage()
		return exitUsage
	}
	cl, err := schemareg.New(schemareg.Options{URL: *url, Username: os.Getenv("PIPE_REGISTRY_USERNAME"),
		Password: os.Getenv("PIPE_REGISTRY_PASSWORD"), Token: os.Getenv("PIPE_REGISTRY_TOKEN")})
	if err != nil {
		return e.fail(exitUsage, "schema pull: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return e.fail(exitFindings, "schema pull: %v", err)
	}
	seen := map[string]bool{}
	if err := pullSubject(ctx, e, cl.SR(), *subject, *version, "", *dir, seen); err != nil {
		return e.fail(exitFindings, "schema pull: %v", err)
	}
	return exitOK
}

// pullSubject writes one version of subject and, first, what it
// references. An Avro schema referenced as ref (the full name of the type
// it defines) is written to <ref>.avsc, where the schema loader looks for a
// type a schema file uses but does not define; a Protobuf or JSON schema
// referenced as ref (the import path or $ref) is written under that name,
// so that the file referring to it reads it from there; anything else as
// <subject>.<ext>.
func pullSubject(ctx context.Context, e *env, cl *sr.Client, subject string, version int, ref, dir string, seen map[string]bool) error {
	ss, err := cl.SchemaByVersion(ctx, subject, version)
	if err != nil {
		return fmt.Errorf("subject %q: %w", subject, err)
	}
	key := fmt.Sprintf("%s@%d", subject, ss.Version)
	if seen[key] {
		return nil
	}
	seen[key] = true
	for _, r := range ss.References {
		if err := pullSubject(ctx, e, cl, r.Subject, r.Version, r.Name, dir, seen); err != nil {
			return err
		}
	}
	ext := ".avsc"
	text := ss.Schema.Schema
	switch ss.Type {
	case sr.TypeProtobuf:
		ext = ".proto"
	case sr.TypeJSON:
		ext = ".json"
	default:
		var v any
		if json.Unmarshal([]byte(text), &v) == nil {
			if b, err := json.MarshalIndent(v, "", "  "); err == nil {
				text = string(b)
			}
		}
	}
	base := subject
	if ref != "" && ext == ".avsc" {
		base = ref
	}
	name := strings.NewReplacer("/", "_", "\\", "_", ":", "_").Replace(base) + ext
	if ss.Type != sr.TypeAvro && refFile(ref, ext) {
		name = filepath.FromSlash(ref)
	}
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(text+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\t%s version %d, id %d\n", path, subject, ss.Version, ss.ID)
	return nil
}

// refFile reports whether a reference name is a relative path of a file
// of extension ext, inside the output directory.
func refFile(ref, ext string) bool {
	return ref != "" && strings.HasSuffix(ref, ext) && filepath.IsLocal(filepath.FromSlash(ref))
}
