package format_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pipe.dev/pipe/lang/ast"
	"pipe.dev/pipe/lang/format"
	"pipe.dev/pipe/lang/parser"
)

var update = flag.Bool("update", false, "rewrite the .golden files")

// TestGolden formats each testdata/*.input, compares the result with the
// .golden file, and checks that formatting the golden file changes nothing.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, diags := format.Source(in, src)
			if diags.HasErrors() {
				t.Fatalf("diagnostics: %v", diags)
			}
			golden := strings.TrimSuffix(in, ".input") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("format(%s) differs from %s:\n%s", in, golden, got)
			}
			again, diags := format.Source(golden, want)
			if diags.HasErrors() {
				t.Fatalf("golden does not parse: %v", diags)
			}
			if !bytes.Equal(again, want) {
				t.Errorf("formatting %s again changes it:\n%s", golden, again)
			}
		})
	}
}

// TestCommentsKept checks that every comment of the input is in the output.
func TestCommentsKept(t *testing.T) {
	src, err := os.ReadFile("testdata/comments.input")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := parser.ParseFile("c.pipe", src)
	out := format.Format(f)
	for _, c := range f.Comments {
		if !bytes.Contains(out, []byte(c.Text)) {
			t.Errorf("comment %q lost", c.Text)
		}
	}
}

func TestSourceError(t *testing.T) {
	out, diags := format.Source("bad.pipe", []byte("source s: kafka { topic = }"))
	if out != nil || !diags.HasErrors() {
		t.Fatalf("got %q, %v; want no output and an error", out, diags)
	}
}

// TestFormatBuiltTree formats a tree built in code, without positions.
func TestFormatBuiltTree(t *testing.T) {
	f := &ast.File{Items: []*ast.TopItem{
		{Stage: &ast.Stage{
			Kind: ast.SourceKind, Name: ast.Ident{Name: "s"},
			Component: &ast.RefOrCall{Name: &ast.Path{Parts: []string{"kafka"}}},
			Body:      true,
			Items: []*ast.BodyItem{
				{Member: &ast.Member{Path: &ast.Path{Parts: []string{"topic"}}, Value: &ast.Value{String: &ast.StringLit{Raw: `"t"`}}}},
				{Member: &ast.Member{Path: &ast.Path{Parts: []string{"key"}}, Assign: &ast.Expr{Text: "id"}}},
				{Where: &ast.Expr{Text: "a > 1"}},
			},
		}},
		{Flow: &ast.Flow{Nodes: []*ast.FlowNode{
			{Refs: []*ast.PortRef{{Stage: ast.Ident{Name: "s"}}}},
			{Bracket: true, Refs: []*ast.PortRef{{Stage: ast.Ident{Name: "a"}}, {Stage: ast.Ident{Name: "b"}, Port: "p"}}},
		}}},
	}}
	want := "source s: kafka {\n  topic = \"t\"\n  key  := id\n  where a > 1\n}\ns -> [a, b.p]\n"
	if got := string(format.Format(f)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
