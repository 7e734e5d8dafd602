package sqlcommon

import (
	"errors"
	"slices"
	"testing"
	"time"

	"pipe.dev/pipe/stdlib"
)

// TestBufferSteps: in upsert mode the last item of a key counts, rows go
// before deletions, and steps hold at most batch rows; a rejection of an
// earlier Write's row fails Flush, one of the current Write's is returned
// at its index in that Write.
func TestBufferSteps(t *testing.T) {
	var b Buffer
	item := func(key string, del bool, write uint64, idx int) Item {
		return Item{Key: key, Del: del, Row: []any{key}, Write: write, Idx: idx}
	}
	b.Add(OpUpsert, []Item{item("a", false, 1, 0), item("b", false, 1, 1), item("c", false, 1, 2)}, []string{"k"})
	b.Add(OpUpsert, []Item{item("a", true, 2, 0), item("b", false, 2, 1), item("d", false, 2, 2), item("e", false, 2, 3)}, []string{"k"})
	steps := b.Steps(OpUpsert, []string{"k"}, 2)
	var got []string
	for _, st := range steps {
		s := st.Op.String() + ":"
		for _, r := range st.Rows {
			s += r[0].(string)
		}
		got = append(got, s)
	}
	if want := []string{"upsert:cb", "upsert:de", "delete:a"}; !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	rejected, err := b.Flush(OpUpsert, []string{"k"}, 2, 2, func(st Step) (stdlib.RecordErrors, error) {
		var out stdlib.RecordErrors
		for i, r := range st.Rows {
			if r[0] == "d" {
				out = append(out, stdlib.RecordError{Index: st.Idx[i], Err: errors.New("bad d")})
			}
		}
		return out, nil
	})
	if err != nil || len(rejected) != 1 || rejected[0].Index != 2 {
		t.Fatalf("Flush: %v %v, want d at index 2 of the second Write", rejected, err)
	}
	if len(b.Items) != 0 {
		t.Fatal("Flush left items")
	}
	b.Add(OpInsert, []Item{item("x", false, 1, 0)}, []string{"k"})
	_, err = b.Flush(OpInsert, nil, 10, 2, func(st Step) (stdlib.RecordErrors, error) {
		return stdlib.RecordErrors{{Index: st.Idx[0], Err: errors.New("bad x")}}, nil
	})
	if err == nil {
		t.Fatal("a rejected row of an earlier Write did not fail Flush")
	}
}

// TestWholeGroups: a full batch is cut after its last whole timestamp
// group; a batch that is one group asks for the whole group.
func TestWholeGroups(t *testing.T) {
	recs := func(offs ...int64) []stdlib.Record {
		var out []stdlib.Record
		for _, o := range offs {
			out = append(out, stdlib.Record{Pos: stdlib.Position{Offset: o}})
		}
		return out
	}
	if keep, _, whole := WholeGroups(recs(1, 2, 2), 4); whole || len(keep) != 3 {
		t.Fatalf("short batch cut: %d %v", len(keep), whole)
	}
	if keep, _, whole := WholeGroups(recs(1, 1, 2, 2), 4); whole || len(keep) != 2 {
		t.Fatalf("full batch: kept %d, want 2", len(keep))
	}
	if _, group, whole := WholeGroups(recs(5, 5, 5), 3); !whole || group != 5 {
		t.Fatalf("one group: %v %v", group, whole)
	}
}

type testDialect struct{}

func (testDialect) Quote(n string) string        { return `"` + n + `"` }
func (testDialect) Param(n int) string           { return "$" + string(rune('0'+n)) }
func (testDialect) Older(ts, arg string) string  { return ts + " < now() - " + arg }
func (testDialect) DelayArg(d time.Duration) any { return d.Seconds() }
func (testDialect) TimeArg(t time.Time) any      { return t }

// TestQuery: the incremental statements of each mode.
func TestQuery(t *testing.T) {
	q := &Query{D: testDialect{}, From: "t", Mode: ModeIncrementing, Inc: "id", TS: "at", Batch: 10}
	if sql, args := q.Next(0, false); sql != `SELECT * FROM t ORDER BY "id" LIMIT 10` || len(args) != 0 {
		t.Errorf("first read: %s %v", sql, args)
	}
	if sql, args := q.Next(7, true); sql != `SELECT * FROM t WHERE "id" > $1 ORDER BY "id" LIMIT 10` || args[0] != int64(7) {
		t.Errorf("next read: %s %v", sql, args)
	}
	q.Mode, q.Delay = ModeTimestampIncrementing, 2*time.Second
	sql, args := q.Next(1e6, true)
	if sql != `SELECT * FROM t WHERE "at" < now() - $1 AND "at" > $2 ORDER BY "at", "id" LIMIT 10` ||
		args[0] != 2.0 || !args[1].(time.Time).Equal(time.Unix(1, 0)) {
		t.Errorf("timestamp read: %s %v", sql, args)
	}
	if sql, _ := q.Group(5); sql != `SELECT * FROM t WHERE "at" = $1 ORDER BY "at", "id"` {
		t.Errorf("group: %s", sql)
	}
}
