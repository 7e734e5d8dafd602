package exprs

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"

	"pipe.dev/pipe/compiler/plan"
	"pipe.dev/pipe/lang/types"
)

var clock = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

func pinned() time.Time { return clock }

func field(name string, t *types.Type) *types.Field { return &types.Field{Name: name, Type: t} }

var customerType = &types.Type{Kind: types.Record, Name: "Customer", Fields: []*types.Field{
	field("id", types.StringType),
	field("vip", types.BoolType),
	field("tier", types.StringType.WithOptional(true)),
}}

var orderType = &types.Type{Kind: types.Record, Name: "Order", Fields: []*types.Field{
	field("id", types.StringType),
	field("customer", customerType),
	field("items", types.ListOf(types.RecordOf(
		field("sku", types.StringType), field("qty", types.IntType), field("price", types.FloatType)))),
	field("amount", types.FloatType),
	field("currency", types.StringType),
	field("status", types.StringType),
	field("tags", types.MapOf(types.StringType)),
	field("note", types.StringType.WithOptional(true)),
	field("placed_at", types.TimestampType),
	field("qty", types.IntType),
	field("risk", types.FloatType.WithOptional(true)),
}}

func orderRecord() map[string]any {
	return map[string]any{
		"id":       "o1",
		"customer": map[string]any{"id": "c1", "vip": false, "tier": "gold"},
		"items": []any{
			map[string]any{"sku": "a", "qty": int64(2), "price": 1.5},
			map[string]any{"sku": "b", "qty": int64(3), "price": 2.0},
		},
		"amount":    120.5,
		"currency":  "EUR",
		"status":    "PAID",
		"tags":      map[string]any{"channel": "app"},
		"note":      nil,
		"placed_at": time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC),
		"qty":       int64(7),
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		src  string
		kind plan.ExprKind
		want any
	}{
		{`status == "PAID" && amount > 0`, plan.WhereExpr, true},
		{`currency in ["EUR", "USD"]`, plan.WhereExpr, true},
		{`amount > 500`, plan.WhereExpr, false},
		{`customer.id`, plan.AssignExpr, "c1"},
		{`sum(items, .qty)`, plan.AssignExpr, int64(5)},
		{`map(items, .sku)`, plan.AssignExpr, []any{"a", "b"}},
		{`customer.vip || (customer.tier ?? "") == "gold"`, plan.AssignExpr, true},
		{`tags["channel"] ?? "web"`, plan.AssignExpr, "app"},
		{`tags["other"] ?? "web"`, plan.AssignExpr, "web"},
		{`note ?? "none"`, plan.AssignExpr, "none"},
		{`risk ?? 0.0`, plan.AssignExpr, 0.0},
		{`int(amount * 100)`, plan.AssignExpr, int64(12050)},
		{`qty + 1`, plan.AssignExpr, int64(8)},
		{`split("a@b", "@")`, plan.AssignExpr, []any{"a", "b"}},
		{`[1, 2]`, plan.AssignExpr, []any{int64(1), int64(2)}},
		{`{"a": 1}`, plan.AssignExpr, map[string]any{"a": int64(1)}},
		{`now()`, plan.AssignExpr, clock},
		{`now() - placed_at`, plan.AssignExpr, int64(2 * time.Hour)},
		{`meta.topic`, plan.AttrExpr, "orders"},
		{`items[0].sku`, plan.AssignExpr, "a"},
		{`filter(items, .qty > 2)[0].sku`, plan.AssignExpr, "b"},
		{`customer?.tier`, plan.AssignExpr, "gold"},
		{`note?.missing`, plan.AssignExpr, nil},
		{`upper(customer.id) + "/" + items[1].sku`, plan.AssignExpr, "C1/b"},
		{`params.region == "eu"`, plan.WhereExpr, true},
	}
	params := types.RecordOf(field("region", types.StringType))
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p, err := Compile(tt.src, Context{Kind: tt.kind, Input: orderType, Params: params}, Options{Now: pinned})
			if err != nil {
				t.Fatal(err)
			}
			env := orderRecord()
			env["meta"] = map[string]any{"topic": "orders"}
			env["params"] = map[string]any{"region": "eu"}
			got, err := p.Run(nil, env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestCompileFlags(t *testing.T) {
	p, err := Compile(`meta.partition == 1 && params.x > 0`, Context{Kind: plan.WhereExpr, Input: orderType,
		Params: types.RecordOf(field("x", types.IntType))}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.UsesMeta() || !p.UsesParams() {
		t.Errorf("UsesMeta = %v, UsesParams = %v, want both true", p.UsesMeta(), p.UsesParams())
	}
	p, err = Compile(`amount > 1`, Context{Kind: plan.WhereExpr, Input: orderType}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.UsesMeta() || p.UsesParams() {
		t.Errorf("UsesMeta = %v, UsesParams = %v, want both false", p.UsesMeta(), p.UsesParams())
	}
}

func TestCompileUntyped(t *testing.T) {
	p, err := Compile(`value + "!"`, Context{Kind: plan.AssignExpr}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Run(nil, map[string]any{"value": "hi"})
	if err != nil || got != "hi!" {
		t.Fatalf("got %v, %v, want hi!", got, err)
	}
}

func TestRunNestedUntyped(t *testing.T) {
	p, err := Compile(`a.b.c + 1`, Context{Kind: plan.AssignExpr}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Run(nil, map[string]any{"a": map[string]any{"b": map[string]any{"c": int64(1)}}})
	if err != nil || got != int64(2) {
		t.Fatalf("got %v, %v, want 2", got, err)
	}
	_, err = p.Run(nil, map[string]any{"a": map[string]any{}})
	var re *RunError
	if want := `a.b.c: cannot fetch "c" from null (a.b = null)`; !errors.As(err, &re) || re.Message != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if got := `a.b.c + 1`[re.Start:re.End]; got != "a.b.c" {
		t.Errorf("error span covers %q, want \"a.b.c\"", got)
	}
}

func TestCompileError(t *testing.T) {
	_, err := Compile(`amount + "x"`, Context{Kind: plan.AssignExpr, Input: orderType}, Options{})
	if err == nil {
		t.Fatal("want an error")
	}
	want := `expression "amount + \"x\"": invalid operation: + (mismatched types float and string)`
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		src, msg string
		kind     plan.ExprKind
	}{
		// What failed, why, and the fields it read, with no Go in it.
		{`risk > 0.5`, "risk > 0.5: invalid operation: null > float (risk = null)", plan.WhereExpr},
		{`to_int("x1")`, `to_int("x1"): cannot convert "x1" to int`, plan.AssignExpr},
		{`status`, "predicate is string, not bool", plan.WhereExpr},
		// fail and assert: the expression's own message, as it is.
		{`amount < 100 || fail("amount " + string(amount) + " is too large")`, "amount 120.5 is too large", plan.WhereExpr},
		{`assert(status == "NEW", "status must be NEW")`, "status must be NEW", plan.WhereExpr},
		{`upper(risk) + status`, "upper(risk): got null, want string (risk = null)", plan.AssignExpr},
		{`!risk`, "!risk: got null, want bool (risk = null)", plan.WhereExpr},
		{`int(risk)`, "int(risk): got null (risk = null)", plan.AssignExpr},
		{`customer.id + (amount / (qty % 0))`, "qty % 0: division by zero (qty = 7)", plan.AssignExpr},
		{`let s = status; customer.tier + len(items[9].sku)`, "items[9]: index out of range: 9 (list length is 2) (items = [{\"price\":1.5,\"qty\":2,\"sku\":\"a\"},{\"pr...)", plan.AssignExpr},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			// Untyped, so the compiler cannot reject what fails at run time.
			p, err := Compile(tt.src, Context{Kind: tt.kind}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Run(nil, orderRecord())
			var re *RunError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *RunError", err)
			}
			if re.Message != tt.msg {
				t.Errorf("message %q, want %q", re.Message, tt.msg)
			}
		})
	}
}

func TestRunConcurrent(t *testing.T) {
	p, err := Compile(`regex_replace(customer.id, "c(\\d)", "x$1") + to_string(sum(items, .qty))`,
		Context{Kind: plan.AssignExpr, Input: orderType}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v vm.VM
			rec := orderRecord()
			for range 500 {
				got, err := p.Run(&v, rec)
				if err != nil {
					errs <- err
					return
				}
				if got != "x15" {
					errs <- errors.New("got " + got.(string))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

var benchRecord = map[string]any{
	"id": "o1", "amount": 75.0, "currency": "EUR", "status": "PAID",
	"qty": int64(3), "placed_at": time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC),
}

var benchType = types.RecordOf(
	field("id", types.StringType), field("amount", types.FloatType), field("currency", types.StringType),
	field("status", types.StringType), field("qty", types.IntType), field("placed_at", types.TimestampType))

func BenchmarkRunFilter(b *testing.B) {
	p, err := Compile(`amount > 50`, Context{Kind: plan.WhereExpr, Input: benchType}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var v vm.VM
	b.ReportAllocs()
	for b.Loop() {
		out, err := p.Run(&v, benchRecord)
		if err != nil || out != true {
			b.Fatal(out, err)
		}
	}
}

func BenchmarkRunMap(b *testing.B) {
	p, err := Compile(`currency == "EUR" ? amount : amount * 1.1`, Context{Kind: plan.AssignExpr, Input: benchType}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	benchProgram(b, p, benchRecord)
}

// TestFastPath checks that top-level field loads use expr's map fast path
// (OpLoadFast) rather than reflection.
func TestFastPath(t *testing.T) {
	p, err := Compile(`amount > 50 && status == "PAID"`, Context{Kind: plan.WhereExpr, Input: benchType}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dis := p.prog.Disassemble()
	if !strings.Contains(dis, "OpLoadFast") || strings.Contains(dis, "OpLoadField") {
		t.Errorf("field loads do not use the fast map path:\n%s", dis)
	}
}

func TestRunWant(t *testing.T) {
	tests := []struct {
		src  string
		want *types.Type
		out  any
		err  string
	}{
		{`qty`, types.FloatType, 7.0, ""},
		{`amount > 100 ? 1 : 2.5`, types.FloatType, 1.0, ""},
		{`fromJSON("{\"a\": 1}")`, types.MapOf(types.AnyType), map[string]any{"a": 1.0}, ""},
		{`fromJSON("\"x\"")`, types.IntType, nil, "result is string, want int"},
		{`note`, types.StringType, nil, "result is null, want string"},
		{`note`, types.StringType.WithOptional(true), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p, err := Compile(tt.src, Context{Kind: plan.AssignExpr, Input: orderType, Want: tt.want}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Run(nil, orderRecord())
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("got %v, %v, want error %q", out, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(out, tt.out) {
				t.Errorf("got %#v, %v, want %#v", out, err, tt.out)
			}
		})
	}
}

// FuzzCheckCompile checks that an expression Check accepts also compiles
// for run time, and that running it returns a value or an error.
func FuzzCheckCompile(f *testing.F) {
	for _, s := range []string{
		`customer.vip || (customer.tier ?? "") == "gold"`, `sum(items, .qty) * 2`, `items[0].sku + id`,
		`tags["x"] ?? "web"`, `risk ?? 0.0`, `mask(customer.id, 2)`, `now() - placed_at`,
		`filter(items, .price > 1.5)`, `{"a": customer.id}.a`, `customer?.tier`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		ctx := Context{Kind: plan.AssignExpr, Input: orderType}
		_, is := Check(src, ctx)
		for _, i := range is {
			if i.Severity == 1 {
				return
			}
		}
		p, err := Compile(src, ctx, Options{Now: pinned})
		if err != nil {
			t.Fatalf("%q: Check accepts it, Compile fails: %v", src, err)
		}
		_, _ = p.Run(nil, orderRecord())
	})
}
