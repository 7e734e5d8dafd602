package sqlcommon

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"strconv"

	"pipe.dev/pipe/stdlib"
)

// The offsets table of an exactly-once SQL sink holds, per pipeline, sink
// task, source and partition, the position the sink committed with its
// rows, the identity of the partition it points into, and target: what
// identifies the table the rows went to (PostgreSQL's OID, InnoDB's table
// id), which stays when the table is renamed or altered and changes when
// it is dropped and created again. Positions stored for another target
// are not held. One extra row per sink task with source = "" and
// partition = "" carries the random token of its last commit.

// TaskSinkID is the sink column of a stage's task: the stage name, with
// "/<task>" appended when the stage runs several tasks.
func TaskSinkID(stage string, task, tasks int) string {
	if tasks > 1 {
		return stage + "/" + strconv.Itoa(task)
	}
	return stage
}

// Held is one position row of the offsets table.
type Held[T cmp.Ordered] struct {
	stdlib.Position
	Target T      // the table its rows went to, zero if unknown
	Was    string // that table's name now, "" if it no longer exists
}

// ForTarget returns the rows stored for target (or for an unknown one)
// and warns, once per other table, of those stored for another.
func ForTarget[T cmp.Ordered](log *slog.Logger, system, table string, target T, rows []Held[T]) []Held[T] {
	var keep []Held[T]
	var zero T
	other := map[T][]Held[T]{}
	for _, r := range rows {
		if r.Target == zero || r.Target == target {
			keep = append(keep, r)
		} else {
			other[r.Target] = append(other[r.Target], r)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(other)) {
		rs := other[id]
		was := "a table since dropped"
		if rs[0].Was != "" {
			was = "table " + rs[0].Was
		}
		log.Warn(system+": held positions not applied: they were stored for another table",
			"table", table, "table_id", target,
			"stored_for", was, "stored_id", id, "positions", len(rs), "first", rs[0].Position.String(),
			"then", "their records are written again into "+table)
	}
	return keep
}

// HeldFor returns the positions of the rows stored for target (or for an
// unknown table), warning of the others as [ForTarget] does; stale reports
// rows stored for another table, which the next commit deletes.
func HeldFor[T cmp.Ordered](log *slog.Logger, system, table string, target T, rows []Held[T]) (held []stdlib.Position, stale bool) {
	for _, r := range ForTarget(log, system, table, target, rows) {
		held = append(held, r.Position)
	}
	return held, len(held) < len(rows)
}

// Lowest returns one position per partition of rows sorted by source and
// partition: the lowest offset, which every task holds.
func Lowest[T cmp.Ordered](rows []Held[T]) []stdlib.Position {
	var out []stdlib.Position
	for _, r := range rows {
		if n := len(out); n > 0 && out[n-1].Source == r.Source && out[n-1].Partition == r.Partition {
			if r.Offset < out[n-1].Offset {
				out[n-1] = r.Position
			}
			continue
		}
		out = append(out, r.Position)
	}
	return out
}
