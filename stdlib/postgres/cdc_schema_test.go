package postgres

import (
	"strings"
	"testing"

	"pipe.dev/pipe/lang/types"
)

// TestCDCSchema: with a declared schema the rows hold the columns it
// names, typed as it says; a captured table that does not fit it fails
// the open, naming the column.
func TestCDCSchema(t *testing.T) {
	c := newCDCEnv(t)
	c.exec("CREATE TABLE " + c.table("o") + " (id bigint PRIMARY KEY, amount numeric(10,2) NOT NULL, note text, extra int)")
	row := types.RecordOf(
		&types.Field{Name: "id", Type: types.IntType},
		&types.Field{Name: "amount", Type: types.FloatType},
		&types.Field{Name: "note", Type: types.StringType.WithOptional(true)},
	)
	s, err := c.open(t, map[string]any{"tables": []any{c.table("o")}, "schema": row}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.exec("INSERT INTO " + c.table("o") + " VALUES (1, 2.5, NULL, 7)")
	c.exec("UPDATE " + c.table("o") + " SET note = 'n' WHERE id = 1")
	recs := readCDC(t, s, 2)
	after := recs[1].Value.(map[string]any)["after"].(map[string]any)
	if len(after) != 3 || after["id"] != int64(1) || after["amount"] != 2.5 || after["note"] != "n" {
		t.Fatalf("row %v, want id, amount and note only", after)
	}
	before := recs[1].Value.(map[string]any)["before"]
	if b, ok := before.(map[string]any); before != nil && (!ok || b["extra"] != nil) {
		t.Fatalf("before %v holds a column the schema does not declare", before)
	}

	for _, tc := range []struct {
		field *types.Field
		want  string
	}{
		{&types.Field{Name: "missing", Type: types.IntType}, `no column "missing"`},
		{&types.Field{Name: "note", Type: types.StringType}, `column "note" may be null: declare it string?`},
		{&types.Field{Name: "amount", Type: types.StringType}, `column "amount" (numeric(10,2)) holds float values, the schema declares string`},
	} {
		row := types.RecordOf(&types.Field{Name: "id", Type: types.IntType}, tc.field)
		s.Close(t.Context())
		_, err := c.open(t, map[string]any{"tables": []any{c.table("o")}, "schema": row}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "does not fit the schema") {
			t.Errorf("schema with %s: %v, want an error with %q", tc.field.Name, err, tc.want)
		}
	}
}
