// Package parser is the first phase of pipe: it turns the bytes of one
// .pipe file into an [ast.File] plus [lang.Diagnostics].
//
// Input: a file name and its source. Output: the tree as parsed (partial
// when the file has a syntax error) and the diagnostics, sorted. It is the
// only package that drives participle; the grammar lives in the struct
// tags of lang/ast.
//
// Three parts:
//   - lexer.go, a hand-written lexer (participle's lexer.Definition).
//     Expressions are captured raw: after ":=" and the keywords where/when,
//     the rest of the line (continued inside brackets) is one Expr token of
//     expr-lang source. Unclosed brackets, malformed literals (`5 s`) and
//     unterminated strings and comments are reported here, where they are.
//   - fast.go, a recursive-descent parser that builds, without reflection,
//     the same tree as the participle grammar for files it accepts. It is
//     what makes large files cheap; the fuzz target checks that both
//     parsers agree on every input.
//   - participle, run when the fast parser gives up: it reports the syntax
//     error (rewritten into plain words by errors.go) and the partial tree.
//
// Invariants: every position is a byte offset from 0, a line from 1 and a
// rune column from 1; every span lies inside the source; Pos is a node's
// first token and EndPos the position just past its last; every comment is
// in File.Comments in source order; every string has its Parts decoded.
// ParseFile never panics: a failure inside it becomes an Internal
// diagnostic. A syntax error stops the parse, so at most one is reported.
package parser
