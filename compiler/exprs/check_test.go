package exprs

import (
	"fmt"
	"strings"
	"testing"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang/types"
	"pipe.dev/pipe/stdlib"
)

// dump formats issues compactly: CODE@start:end[severity] message (detail).
func dump(src string, is []Issue) string {
	var parts []string
	for _, i := range is {
		s := fmt.Sprintf("%s@%d:%d[%s] %s", i.Code, i.Start, i.End, i.Severity, i.Message)
		if i.Detail != "" {
			s += " (" + i.Detail + ")"
		}
		if i.Start < 0 || i.End > len(src) || i.Start > i.End {
			s += " BAD SPAN"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "\n")
}

func TestCheckTypes(t *testing.T) {
	params := types.RecordOf(field("region", types.StringType), field("limit", types.IntType))
	tests := []struct {
		src  string
		kind plan.ExprKind
		want string
	}{
		{`status == "PAID" && amount > 0`, plan.WhereExpr, "bool"},
		{`customer.id`, plan.AssignExpr, "string"},
		{`customer`, plan.AssignExpr, "Customer"},
		{`customer.tier`, plan.AssignExpr, "string?"},
		{`customer.tier ?? ""`, plan.AssignExpr, "string"},
		{`risk ?? 0.0`, plan.AssignExpr, "float"},
		{`risk ?? 0`, plan.AssignExpr, "float"},
		{`int(amount * 100)`, plan.AssignExpr, "int"},
		{`qty * 2`, plan.AssignExpr, "int"},
		{`amount * qty`, plan.AssignExpr, "float"},
		{`sum(items, .qty)`, plan.AssignExpr, "int"},
		{`items[0]`, plan.AssignExpr, "{sku: string, qty: int, price: float}"},
		{`items`, plan.AssignExpr, "list<{sku: string, qty: int, price: float}>"},
		{`map(items, .sku)`, plan.AssignExpr, "list<any>"},
		{`tags["channel"] ?? "web"`, plan.AssignExpr, "string"},
		{`tags`, plan.AssignExpr, "map<string, string>"},
		{`placed_at`, plan.AssignExpr, "timestamp"},
		{`now()`, plan.AssignExpr, "timestamp"},
		{`now() - placed_at`, plan.AssignExpr, "int"},
		{`split(id, "-")`, plan.AssignExpr, "list<string>"},
		{`amount > 100 ? "big" : "small"`, plan.AssignExpr, "string"},
		{`amount > 100 ? 1 : 2.5`, plan.AssignExpr, "float"},
		{`note != nil ? note : nil`, plan.AssignExpr, "string?"},
		{`mask(customer.id, 4)`, plan.AssignExpr, "string"},
		{`sha256(id)`, plan.AssignExpr, "string"},
		{`regex_match(id, "^o[0-9]+$")`, plan.WhereExpr, "bool"},
		{`parse_time("2024-01-01T00:00:00Z")`, plan.AssignExpr, "timestamp"},
		{`unix(placed_at)`, plan.AssignExpr, "int"},
		{`to_float(qty)`, plan.AssignExpr, "float"},
		{`merge(customer, {"x": 1})`, plan.AssignExpr, "map<string, any>"},
		{`flatten(customer, "_")`, plan.AssignExpr, "map<string, any>"},
		{`random_int(1, 6)`, plan.AssignExpr, "int"},
		{`meta.partition`, plan.AssignExpr, "int"},
		{`meta.headers["trace"]`, plan.AssignExpr, "string"},
		{`params.region == "eu"`, plan.WhereExpr, "bool"},
		{`params.limit`, plan.AssignExpr, "int"},
		{`toBase64(id)`, plan.AssignExpr, "string"},
		{`coalesce(note, id)`, plan.AssignExpr, "string"},
		{`coalesce(note, customer.tier)`, plan.AssignExpr, "string?"},
		{`coalesce(risk, qty)`, plan.AssignExpr, "float"},
		{"amount > 1 &&\n  currency in [\"EUR\"]", plan.CaseExpr, "bool"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			res, is := Check(tt.src, Context{Kind: tt.kind, Input: orderType, Params: params})
			for _, i := range is {
				if i.Severity == 1 {
					t.Fatalf("unexpected issues:\n%s", dump(tt.src, is))
				}
			}
			if got := res.Type.String(); got != tt.want {
				t.Errorf("type %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCheckIssues(t *testing.T) {
	tests := []issueCase{
		// Unknown fields: at the field, nested or not, with a suggestion.
		{`customer.vipp`, plan.WhereExpr,
			`PIPE104@9:13[error] unknown field "vipp" in Customer (did you mean "vip"?)`},
		{`customer.vip || customer.vipp`, plan.WhereExpr,
			`PIPE104@25:29[error] unknown field "vipp" in Customer (did you mean "vip"?)`},
		{`amout > 1`, plan.WhereExpr,
			`PIPE104@0:5[error] unknown field "amout" in Order (did you mean "amount"?)`},
		{`items[0].skux`, plan.AssignExpr,
			`PIPE104@9:13[error] unknown field "skux" in {sku: string, qty: int, price: float} (did you mean "sku"?)`},
		{`meta.topik`, plan.AssignExpr,
			`PIPE104@5:10[error] unknown field "topik" in meta (did you mean "topic"?)`},
		{`params.x`, plan.AssignExpr,
			`PIPE104@0:6[error] params is only defined inside a def`},
		{`amount.cents`, plan.AssignExpr, `PIPE105@7:12[error] cannot read field "cents" of float`},
		{`customer.id.foo()`, plan.AssignExpr, `PIPE113@12:15[error] unknown method "foo" of string`},
		// Unknown functions: a name spelt alike, alike but for case and
		// underscores, or containing a function's name.
		{`uper(id)`, plan.AssignExpr, `PIPE113@0:4[error] unknown function "uper" (did you mean "upper"?)`},
		{`toUpper(id)`, plan.AssignExpr, `PIPE113@0:7[error] unknown function "toUpper" (did you mean "upper"?)`},
		{`uppercase(id)`, plan.AssignExpr, `PIPE113@0:9[error] unknown function "uppercase" (did you mean "upper"?)`},
		{`parseTime(id)`, plan.AssignExpr, `PIPE113@0:9[error] unknown function "parseTime" (did you mean "parse_time"?)`},
		{`frobnicate(id)`, plan.AssignExpr, `PIPE113@0:10[error] unknown function "frobnicate"`},
		// Multi-line: byte offsets count the newline and the indentation.
		{"amount > 1 &&\n    customer.vipp", plan.WhereExpr,
			`PIPE104@27:31[error] unknown field "vipp" in Customer (did you mean "vip"?)`},
		// Multi-byte characters before the error: offsets are bytes, not runes.
		{"\"ünïcode\" == id &&\n customer.vipp", plan.WhereExpr,
			`PIPE104@31:35[error] unknown field "vipp" in Customer (did you mean "vip"?)`},
		// Unknown functions.
		{`frobnicate(amount)`, plan.AssignExpr, `PIPE113@0:10[error] unknown function "frobnicate"`},
		{`uper(status)`, plan.AssignExpr, `PIPE113@0:4[error] unknown function "uper" (did you mean "upper"?)`},
		{`regex_mach(id, "x")`, plan.WhereExpr,
			`PIPE113@0:10[error] unknown function "regex_mach" (did you mean "regex_match"?)`},
		// Type errors, with Go types rewritten.
		{`amount + "x"`, plan.AssignExpr,
			`PIPE105@7:8[error] invalid operation: + (mismatched types float and string)`},
		{`customer + 1`, plan.AssignExpr,
			`PIPE105@9:10[error] invalid operation: + (mismatched types Customer and int)`},
		{`items + 1`, plan.AssignExpr,
			`PIPE105@6:7[error] invalid operation: + (mismatched types list<{sku: string, qty: int, price: float}> and int)`},
		{`tags + placed_at`, plan.AssignExpr,
			`PIPE105@5:6[error] invalid operation: + (mismatched types map<string, string> and timestamp)`},
		{`mask(id, "4")`, plan.AssignExpr,
			`PIPE105@9:12[error] mask takes (string, int), not (string, string)`},
		{`upper(qty)`, plan.AssignExpr,
			`PIPE105@6:9[error] upper takes string, not int`},
		{`len(customer)`, plan.AssignExpr, `PIPE105@0:3[error] invalid argument for len (type Customer)`},
		// A call whose arguments fit no signature says what it takes.
		{`trim(amount)`, plan.AssignExpr, `PIPE105@0:4[error] trim takes string or (string, string), not float`},
		{`trim(id, 1)`, plan.AssignExpr, `PIPE105@9:10[error] trim takes string or (string, string), not (string, int)`},
		{`sha256(qty)`, plan.AssignExpr, `PIPE105@7:10[error] sha256 takes string or bytes, not int`},
		{`substr(id)`, plan.AssignExpr, `PIPE105@0:6[error] substr takes (string, int) or (string, int, int), not 1 argument`},
		// Predicates must be bool.
		{`amount`, plan.WhereExpr, `PIPE106@0:6[error] where predicate must be bool, got float`},
		{`  customer `, plan.CaseExpr, `PIPE106@2:10[error] case condition must be bool, got Customer`},
		{`customer.tier`, plan.WhereExpr, `PIPE106@0:13[error] where predicate must be bool, got string?`},
		// Syntax.
		{`amount >`, plan.WhereExpr, `PIPE001@8:8[error] unexpected token EOF`},
		{`   `, plan.WhereExpr, `PIPE001@0:3[error] empty expression`},
		// Division by a constant zero (PIPE114), at the divisor; a
		// division by a field is not checked.
		{`amount / 0`, plan.AssignExpr,
			`PIPE114@9:10[error] division by zero (it gives +Inf, -Inf or NaN, which JSON and CSV cannot hold)`},
		{`1 / 0`, plan.AssignExpr,
			`PIPE114@4:5[error] division by zero (it gives +Inf, -Inf or NaN, which JSON and CSV cannot hold)`},
		{`amount / -0.0 > 1`, plan.WhereExpr,
			`PIPE114@9:13[error] division by zero (it gives +Inf, -Inf or NaN, which JSON and CSV cannot hold)`},
		{`qty % (3 - 1 * 3)`, plan.AssignExpr,
			`PIPE114@7:16[error] remainder of a division by zero (it fails for every record)`},
		{`5 % 0`, plan.AssignExpr,
			`PIPE114@4:5[error] remainder of a division by zero (it fails for every record)`},
		{`amount / qty`, plan.AssignExpr, ``},
		{`amount / 0.5`, plan.AssignExpr, ``},
		{`qty % (2 - 1)`, plan.AssignExpr, ``},
	}
	checkIssues(t, tests)
}

// TestCheckNullSafety: a value that may be null, used where null fails, is
// PIPE116 at the value, unless a check in the same expression narrows it
// or ?? gives a default; ==, !=, in, contains and ?? take null.
func TestCheckNullSafety(t *testing.T) {
	const hint = "check it first (%[1]s != nil && …), give a default (%[1]s ?? …), or let a filter or route case take the nulls"
	bad := func(at, text, typ, what string) string {
		msg := text + " may be null, and " + what + " fails on null"
		if typ != "" {
			msg = text + " is " + typ + " and may be null, and " + what + " fails on null"
		}
		p := text
		if strings.ContainsAny(text, "(?") {
			p = "(" + text + ")"
		}
		return "PIPE116@" + at + "[error] " + msg + " (" + fmt.Sprintf(hint, p) + ")"
	}
	tests := []issueCase{
		{`note > "a"`, plan.WhereExpr, bad("0:4", "note", "string?", "operator >")},
		{`upper(customer.tier) == "GOLD"`, plan.WhereExpr, bad("6:19", "customer.tier", "string?", "upper()")},
		{`risk * 100`, plan.AssignExpr, bad("0:4", "risk", "float?", "operator *")},
		{`-risk`, plan.AssignExpr, bad("1:5", "risk", "float?", "operator -")},
		{`string(note)`, plan.AssignExpr, bad("7:11", "note", "string?", "string()")},
		{`upper(coalesce(note, customer.tier))`, plan.AssignExpr, bad("6:35", "coalesce(note, customer.tier)", "", "upper()")},
		{`len(note ?? customer.tier)`, plan.AssignExpr, bad("4:25", "note ?? customer.tier", "", "len()")},
		{`let t = customer.tier; upper(t)`, plan.AssignExpr, bad("29:30", "t", "string?", "upper()")},
		// Null is accepted.
		{`note == "x" || note != "y"`, plan.WhereExpr, ``},
		{`note in ["a", "b"]`, plan.WhereExpr, ``},
		{`note not in ["a"]`, plan.WhereExpr, ``},
		{`note contains "x" || note startsWith "y"`, plan.WhereExpr, ``},
		{`note`, plan.AssignExpr, ``},
		{`[note, id]`, plan.AssignExpr, ``},
		{`{"n": note}`, plan.AssignExpr, ``},
		{`coalesce(note, id)`, plan.AssignExpr, ``},
		{`toJSON(note)`, plan.AssignExpr, ``},
		{`(note ?? "") > "a"`, plan.WhereExpr, ``},
		{`upper(coalesce(note, id))`, plan.AssignExpr, ``},
		// Narrowing in the same expression.
		{`note != nil && note > "a"`, plan.WhereExpr, ``},
		{`nil != note && upper(note) == "A"`, plan.WhereExpr, ``},
		{`note == nil || note > "a"`, plan.WhereExpr, ``},
		{`!(note == nil) && note > "a"`, plan.WhereExpr, ``},
		{`not (note == nil || risk == nil) && risk > 0.5 && note > "a"`, plan.WhereExpr, ``},
		{`note != nil ? upper(note) : ""`, plan.AssignExpr, ``},
		{`note == nil ? "" : upper(note)`, plan.AssignExpr, ``},
		{`note == "x" && upper(note) == "X"`, plan.WhereExpr, ``},
		{`note in ["x", "y"] && upper(note) == "X"`, plan.WhereExpr, ``},
		{`customer.tier != nil && customer.tier == "gold"`, plan.WhereExpr, ``},
		// A check that fails the record otherwise narrows too.
		{`(note != nil || fail("no note")) && upper(note) == "A"`, plan.WhereExpr, ``},
		{`assert(risk != nil, "no risk") && risk > 0.5`, plan.WhereExpr, ``},
		{`note != nil ? upper(note) : fail("no note")`, plan.AssignExpr, ``},
		// A check proves nothing where it may not hold.
		{`note != nil || note > "a"`, plan.WhereExpr, bad("15:19", "note", "string?", "operator >")},
		{`note == nil && note > "a"`, plan.WhereExpr, bad("15:19", "note", "string?", "operator >")},
		{`note != nil ? "" : upper(note)`, plan.AssignExpr, bad("25:29", "note", "string?", "upper()")},
		{`note in ["x", nil] && upper(note) == "X"`, plan.WhereExpr, bad("28:32", "note", "string?", "upper()")},
		{`risk != nil && note > "a"`, plan.WhereExpr, bad("15:19", "note", "string?", "operator >")},
	}
	checkIssues(t, tests)
}

func TestCheckAnnotation(t *testing.T) {
	tests := []struct {
		src      string
		want     *types.Type
		issues   string
		resultTy string
	}{
		{`"x"`, types.IntType, `PIPE107@0:3[error] expression of type string does not match annotation int (string is not int)`, "string"},
		{`qty`, types.FloatType, ``, "int"},
		{`note`, types.StringType, `PIPE107@0:4[error] expression of type string? does not match annotation string (string? may be null, string may not)`, "string?"},
		{`amount > 1 ? 1 : "x"`, types.StringType, ``, "string"},
		{`fromJSON(id)`, types.MapOf(types.AnyType), ``, "map<string, any>"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			res, is := Check(tt.src, Context{Kind: plan.AssignExpr, Input: orderType, Want: tt.want})
			if got := dump(tt.src, is); got != tt.issues {
				t.Errorf("issues:\n%s\nwant:\n%s", got, tt.issues)
			}
			if res.Type.String() != tt.resultTy {
				t.Errorf("type %s, want %s", res.Type, tt.resultTy)
			}
		})
	}
}

func TestCheckConst(t *testing.T) {
	tests := []struct {
		src   string
		want  string // "true", "false" or "" (not constant)
		isNow bool
	}{
		{`1 > 2`, "false", false},
		{`true`, "true", false},
		{`amount > 1 || true`, "true", false},
		{`amount > 1 && 1 == 2`, "false", false},
		{`"a" in ["a", "b"]`, "true", false},
		{`len("abc") == 3`, "true", false},
		{`amount > 1`, "", false},
		{`params.region == "eu"`, "", false},
		{`now() > placed_at`, "", true},
		{`random() < 0.5`, "", true},
		{`uuid() != ""`, "", true},
	}
	params := types.RecordOf(field("region", types.StringType))
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			res, is := Check(tt.src, Context{Kind: plan.WhereExpr, Input: orderType, Params: params})
			if len(is) > 0 {
				t.Fatalf("unexpected issues:\n%s", dump(tt.src, is))
			}
			got := ""
			if res.Const != nil {
				got = fmt.Sprint(*res.Const)
			}
			if got != tt.want {
				t.Errorf("const %q, want %q", got, tt.want)
			}
			if res.UsesNow != tt.isNow {
				t.Errorf("UsesNow %v, want %v", res.UsesNow, tt.isNow)
			}
		})
	}
}

func TestCheckUntyped(t *testing.T) {
	res, is := Check(`value.anything + 1`, Context{Kind: plan.AssignExpr})
	if len(is) > 0 {
		t.Fatalf("unexpected issues:\n%s", dump("", is))
	}
	if res.Type.Kind != types.Any {
		t.Errorf("type %s, want any", res.Type)
	}
	_, is = Check(`frob(value)`, Context{Kind: plan.AssignExpr})
	if got := dump("frob(value)", is); !strings.HasPrefix(got, `PIPE113@0:4[error] unknown function "frob"`) {
		t.Errorf("issues:\n%s", got)
	}
	res, is = Check(`value == "x"`, Context{Kind: plan.WhereExpr})
	if len(is) > 0 || res.Type.Kind != types.Bool {
		t.Errorf("got %s, issues:\n%s", res.Type, dump("", is))
	}
}

func TestRewriteMessage(t *testing.T) {
	names := map[string]string{
		`struct { F0 string "expr:\"id\"" }`: "{id: string}",
	}
	tests := []struct{ in, want string }{
		{`mismatched types float64 and int64`, `mismatched types float and int`},
		{`cannot use *string as argument`, `cannot use string? as argument`},
		{`got []interface {}`, `got list<any>`},
		{`got map[string]interface {}`, `got map<string, any>`},
		{`got []uint8 and time.Time`, `got bytes and timestamp`},
		{`type struct { F0 string "expr:\"id\"" } has no field x`, `type {id: string} has no field x`},
		{`got *struct { F0 string "expr:\"id\"" }`, `got {id: string}?`},
		{`got []struct { F0 string "expr:\"id\"" }`, `got list<{id: string}>`},
		{`cannot fetch x from <nil>`, `cannot fetch x from null`},
		{`pointint64 stays`, `pointint64 stays`},
	}
	for _, tt := range tests {
		if got := rewriteMessage(tt.in, names); got != tt.want {
			t.Errorf("rewriteMessage(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzCheck checks that Check never panics, reports no internal error and
// keeps every span inside the source.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`customer.vipp`, `amount + "x"`, "a &&\n b", `frob(1)`, `(1`, `note ?? ""`,
		`map(items, .sku)`, `"ü" + id`, `items[0].qty > 2`, `note != nil && note > "a"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, kind := range []plan.ExprKind{plan.WhereExpr, plan.AssignExpr} {
			_, is := Check(src, Context{Kind: kind, Input: orderType})
			for _, i := range is {
				if i.Start < 0 || i.End > len(src) || i.Start > i.End {
					t.Fatalf("%q: span %d:%d outside the source: %s", src, i.Start, i.End, i.Message)
				}
				if i.Code == 901 {
					t.Fatalf("%q: internal error: %s", src, i.Message)
				}
			}
		}
	})
}

func TestCheckConcurrent(t *testing.T) {
	done := make(chan string, 8)
	for range 8 {
		go func() {
			for range 50 {
				_, is := Check(`customer.vipp`, Context{Kind: plan.WhereExpr, Input: orderType})
				if len(is) != 1 {
					done <- dump(`customer.vipp`, is)
					return
				}
			}
			done <- ""
		}()
	}
	for range 8 {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}

// TestCheckerReuse checks that a shared Checker answers exactly as a fresh
// Check for every expression, whatever it checked before, and that equal
// contexts share one environment.
func TestCheckerReuse(t *testing.T) {
	params := types.RecordOf(field("region", types.StringType), field("limit", types.IntType))
	renamed := *orderType
	renamed.Name = "Purchase"
	copied := *orderType // same structure and name, another pointer
	ctxs := []Context{
		{Kind: plan.WhereExpr, Input: orderType},
		{Kind: plan.AssignExpr, Input: orderType},
		{Kind: plan.AssignExpr, Input: orderType, Params: params},
		{Kind: plan.CaseExpr, Input: &renamed},
		{Kind: plan.AssignExpr, Input: &copied, Want: types.StringType},
		{Kind: plan.WhereExpr},
		{Kind: plan.AssignExpr},
	}
	srcs := []string{
		`status == "PAID" && amount > 0`, `customer.vipp`, `amout > 1`, `customer.tier`,
		`customer.tier == "gold"`, `1 > 2`, `now() > placed_at`, `params.limit`, `frobnicate(amount)`,
		`amount +`, `sum(items, .qty)`, `id`, `x.y ?? "a"`, `coalesce(note, id)`,
	}
	var c Checker
	for round := range 2 {
		for i, ctx := range ctxs {
			for _, src := range srcs {
				wantRes, wantIs := Check(src, ctx)
				gotRes, gotIs := c.Check(src, ctx)
				name := fmt.Sprintf("round %d, context %d, %q", round, i, src)
				if got, want := dump(src, gotIs), dump(src, wantIs); got != want {
					t.Errorf("%s: issues\n got: %s\nwant: %s", name, got, want)
				}
				if got, want := gotRes.Type.String(), wantRes.Type.String(); got != want {
					t.Errorf("%s: type %s, want %s", name, got, want)
				}
				if (gotRes.Const == nil) != (wantRes.Const == nil) || gotRes.Const != nil && *gotRes.Const != *wantRes.Const {
					t.Errorf("%s: const %v, want %v", name, gotRes.Const, wantRes.Const)
				}
				if gotRes.UsesNow != wantRes.UsesNow {
					t.Errorf("%s: uses now %v, want %v", name, gotRes.UsesNow, wantRes.UsesNow)
				}
			}
		}
	}
	// orderType and its copy share an environment; the renamed type, the
	// params and the untyped contexts do not.
	if n := len(c.envs); n != 6 {
		t.Errorf("%d environments built, want 6", n)
	}
}

func TestCheckUndeclaredMeta(t *testing.T) {
	meta := stdlib.MetaType([]stdlib.MetaField{stdlib.MetaOffset, stdlib.MetaKey})
	for _, c := range []struct {
		src  string
		want string
	}{
		{`meta.offset + 1`, ``},
		{`string(meta.key) + meta.topic`, `PIPE115@19:29[error] meta.topic is not set by every source the records come from`},
		{`meta["partition"] > 1 && meta?.headers != nil`, "PIPE115@0:17[error] meta.partition is not set by every source the records come from\n" +
			"PIPE115@25:38[error] meta.headers is not set by every source the records come from"},
		{`meta.topik`, `PIPE104@5:10[error] unknown field "topik" in meta (did you mean "topic"?)`},
		{`{"a": 1}[meta.topic] ?? 0`, `PIPE115@9:19[error] meta.topic is not set by every source the records come from`},
	} {
		for _, in := range []*types.Type{nil, orderType} {
			_, is := Check(c.src, Context{Kind: plan.AssignExpr, Input: in, Meta: meta})
			if got := dump(c.src, is); got != c.want {
				t.Errorf("%s (input %v):\n%s\nwant:\n%s", c.src, in, got, c.want)
			}
		}
	}
	// Without Meta every field may be read.
	if _, is := Check(`meta.topic`, Context{Kind: plan.AssignExpr}); len(is) > 0 {
		t.Errorf("issues:\n%s", dump("meta.topic", is))
	}
}

// issueCase is an expression of kind on orderType and the issues Check
// reports for it (dumped; "" for none).
type issueCase struct {
	src  string
	kind plan.ExprKind
	want string
}

func checkIssues(t *testing.T, tests []issueCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			_, is := Check(tt.src, Context{Kind: tt.kind, Input: orderType})
			if got := dump(tt.src, is); got != tt.want {
				t.Errorf("issues:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
