// Package parser is the first phase of pipe: it turns the bytes of one
// .pipe file into an [ast.File] plus [lang.Diagnostics].
//
// Input: a file name and its source. Output: the tree as parsed (partial
// when the file has a syntax error) and the diagnostics, sorted. It is the
// only package that drives participle; the grammar lives in the struct tags
// of lang/ast, and the lexer is hand-written (lexer.go) because expressions
// are captured raw: after ":=" and the keywords where/when, the rest of the
// line (continued inside brackets) is one Expr token of expr-lang source.
//
// Invariants: every position is a byte offset from 0, a line from 1 and a
// rune column from 1; every span lies inside the source; every comment is
// in File.Comments in source order; every string has its Parts decoded.
// ParseFile never panics: a failure inside it becomes an Internal
// diagnostic. A syntax error stops the parse, so at most one is reported.
package parser
