package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"pipe.dev/pipe/lang/format"
	"pipe.dev/pipe/stdlib/postgres"
)

// pullPostgres writes the row type of each table as a schema in
// DIR/<table>.pipe: `schema <Table> { column: type … }`, formatted, for a
// pipeline to import (`import "schemas/orders.pipe" as orders`, then
// `schema = orders.Orders`).
func pullPostgres(e *env, dsn string, tables []string, dir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return e.fail(exitFindings, "schema pull: %v", err)
	}
	for _, table := range tables {
		t, err := postgres.TableType(ctx, dsn, table)
		if err != nil {
			return e.fail(exitFindings, "schema pull: table %q: %v", table, err)
		}
		base := table[strings.LastIndexByte(table, '.')+1:]
		var b strings.Builder
		fmt.Fprintf(&b, "// The rows of PostgreSQL table %s, pulled by `pipe schema pull --postgres` on %s.\n",
			table, time.Now().UTC().Format(time.DateOnly))
		fmt.Fprintf(&b, "schema %s {\n", schemaName(base))
		for _, f := range t.Fields {
			fmt.Fprintf(&b, "%s: %s\n", f.Name, f.Type)
		}
		b.WriteString("}\n")
		path := filepath.Join(dir, base+".pipe")
		out, diags := format.Source(path, []byte(b.String()))
		if len(diags) > 0 {
			fmt.Fprintf(e.stderr, "pipe: schema pull: table %q: its columns do not make a pipe schema (a column name that is not an identifier?):\n", table)
			fmt.Fprintln(e.stderr, diags.Error())
			return exitFindings
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return e.fail(exitFindings, "schema pull: %v", err)
		}
		fmt.Fprintln(e.stdout, path)
	}
	return exitOK
}

// schemaName is a table's name as a schema's: snake_case to CamelCase.
func schemaName(table string) string {
	var b strings.Builder
	up := true
	for _, r := range table {
		switch {
		case r == '_':
			up = true
		case up:
			b.WriteRune(unicode.ToUpper(r))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
