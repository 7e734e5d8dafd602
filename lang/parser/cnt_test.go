package parser

import (
	"testing"
)

func BenchmarkLex(b *testing.B) {
	src := genForCount()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		lex("x", src)
	}
}
