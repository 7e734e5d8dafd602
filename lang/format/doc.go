// Package format is the canonical printer behind `pipe fmt`.
//
// Input: a parsed [ast.File] (positions and comments included). Output:
// its canonical source: two-space indentation, one item per line, "=" and
// ":=" aligned within each run of consecutive one-line attributes, at most
// one blank line between items, lists and maps on one line when they were
// written on one line (or are short), expressions and strings verbatim, and
// every comment kept (trailing comments stay trailing, own-line comments
// stay before the item that follows them).
//
// Invariant: formatting is idempotent: Format(parse(Format(f))) equals
// Format(f) for every file that parses without errors.
package format
