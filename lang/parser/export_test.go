package parser

import (
	"pipe.dev/pipe/lang"
	"pipe.dev/pipe/lang/ast"
)

// ParseWithParticiple parses without the hand-written fast path, so tests
// can check that both agree.
func ParseWithParticiple(name string, src []byte) (*ast.File, lang.Diagnostics) {
	return parse(name, src, false)
}

// Walk calls fn for every non-nil pointer to a struct reachable from v.
var Walk = walk
