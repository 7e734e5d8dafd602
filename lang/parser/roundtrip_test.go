package parser_test

import "testing"

// TestRoundTrip checks the fuzz properties on hand-written sources with
// comments and layouts in awkward places.
func TestRoundTrip(t *testing.T) {
	srcs := []string{
		"source /* a */ s: /* b */ kafka /* c */ { /* d */ x = /* e */ 1 /* f */ }",
		"source s: kafka { // head\n  x = 1 /* a\n  b */ y = 2\n}",
		"sink s: x { a = [1, // one\n 2] }",
		"sink s: x { a = [{ k: 1, // c\n j: 2 }, 3] }",
		"schema S {\n  r: { // rec\n    a: int // a\n    b: string\n    // end\n  }?\n  c: int\n}",
		"sink s: x {}\n// no newline at end",
		"def transform d(a: int /* p */ = 1, // q\n b: string): map { y := 1 }",
		"a -> // x\n b -> /* y */ [c, // z\n d]",
		"sink s: x { a = [`multi\nline`, 2] }",
		"sink s: x { a = [\n  1\n  2\n  // before close\n] }",
		"transform f: filter { where x /* c */ }",
		"transform f: filter { where x > 1 /* c */ } // after",
		"transform f: filter {\n  where (x >\n 1) // c\n}",
		"\n\n\n// lead\n\n\nsource s: k\n\n\n\nsink t: k\n",
		"test \"t\" { // h\n given a [ // g\n { x: 1 } // r\n ] // e\n expect b count 2 // n\n}",
		"pipeline { }\npipeline p {}\nsink s: x { b { } c { d = 1 } }",
		"sink s: x { m = {\n  \"a\" = 1 // one\n  b: [1,\n 2]\n} }",
		"transform m: map {\n  x := a +\n    b\n  y := c\n}",
		"transform m: map {\n      x := f(a,\n  b)\n}",
		"transform m: map { x := f(\n\ta,\n\t\tb) }",
		"sink s: x { a = [[1, 2], [3,\n 4]] }",
		"sink s: x { a = retry(max = [1,\n 2]) }",
		"import \"x\" as -> b",
		"pipeline -> x\nsource -> x\nschema -> x\ntest -> x\ndef -> x\nimport -> x\nsink.p -> x",
		"sink s: x { case.x = 1 else = 1 keep = 1 drop.x = 1 where = 1 case = 2 }",
		"test \"t\" { given = 1 expect = 2 given.x = 3 }",
		"transform m: map { x: list := a y: map := b z: list? := c }",
		"sink s: x { a = [a\n(b)] b = { \"a\": 1, b = 2, } c = f() d = f(x,) e = -1.5 f = [-1, - 2] }",
		"test \"t\" { expect x count -1 expect y.p [] expect z where a }",
		"a -> b -> [c,]\n[a, b.c] -> d",
		"def source g(): gen\ndef sink h(a: int,): x {}",
		"schema S { a: int, b: string, }",
		"sink s: x { a = true b = false c = null d = truex e = nullable }",
		"/* only */",
		"schema S { a: {}, b: {}? }\ndef sink d(p: {}): x",
		"",
		"// a\n// b\n\n// c\nsink s: x {\n\n  // d\n\n  a = 1\n\n\n  b = 2\n\n  // e\n\n}\n\n// f\n",
	}
	for _, src := range srcs {
		t.Run("", func(t *testing.T) {
			checkRoundTrip(t, "r.pipe", []byte(src))
		})
	}
}
