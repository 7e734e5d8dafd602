package postgres

import (
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestSourceLag: an incrementing source behind reports the ids between
// the last row read and the table's greatest, 0 once caught up.
func TestSourceLag(t *testing.T) {
	e := newPG(t)
	table := e.table("lag")
	e.exec("CREATE TABLE " + table + " (id bigint PRIMARY KEY, v text)")
	e.exec("INSERT INTO " + table + " SELECT g, 'v' || g FROM generate_series(1, 25) g")
	src := e.openSource(map[string]any{"table": table, "incrementing_column": "id", "batch": int64(10)}, nil, nil)
	stdlibtest.WantLag(t, src)
	for _, want := range []int64{15, 5, 0} {
		if _, err := src.Read(t.Context()); err != nil {
			t.Fatal(err)
		}
		stdlibtest.WantLag(t, src, stdlib.Lag{Partition: src.Partition, Behind: want, Unit: "ids"})
	}
}
