package sqlcommon

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"pipe.dev/pipe/stdlib"
)

// Catalog is what a SQL sink's Open reads and changes in its server's
// catalog, on the connection Open dialled.
type Catalog[C Column] interface {
	// Resolve qualifies the names of the table and of the offsets table
	// with the connection's database or schema, and sets Table.Name.
	Resolve(ctx context.Context) error
	// Columns returns the table's columns in table order, none when the
	// table does not exist.
	Columns(ctx context.Context) ([]C, error)
	// CreateTable creates the table from the record type.
	CreateTable(ctx context.Context) error
	// Keys returns the column lists of the table's unique indexes, each
	// sorted and comma-joined ([KeyList]), and its primary key columns.
	Keys(ctx context.Context) (uniques, pk []string, err error)
	// CheckType checks the record type against the columns, adding
	// columns for new fields when the sink evolves the table.
	CheckType(ctx context.Context) error
	// Bufferable tells why rows of several Writes may not share a
	// statement, or "" if they may.
	Bufferable(ctx context.Context, uniques []string) (string, error)
	// Held creates the offsets table if need be and returns the positions
	// the task holds for the table.
	Held(ctx context.Context) ([]stdlib.Position, error)
}

// Prepare is the part of Open that follows the dial: it finds the table
// (creating it when create_table is set), takes its primary key as the key when
// none is set, checks that the mode can work on its keys and the record
// type on its columns, decides whether Writes may share statements and,
// exactly once, returns the positions held.
func (s *Sink[C]) Prepare(ctx context.Context, cat Catalog[C]) ([]stdlib.Position, error) {
	if err := cat.Resolve(ctx); err != nil {
		return nil, err
	}
	cols, err := cat.Columns(ctx)
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		if !s.Create {
			return nil, fmt.Errorf("table %q does not exist (set create_table = true to create it)", s.Tbl.Name)
		}
		if err := cat.CreateTable(ctx); err != nil {
			return nil, err
		}
		if cols, err = cat.Columns(ctx); err != nil {
			return nil, err
		}
	}
	s.Tbl.SetColumns(cols)
	uniques, pk, err := cat.Keys(ctx)
	if err != nil {
		return nil, err
	}
	if s.Tbl.Mode != OpInsert && len(s.Tbl.Keys) == 0 {
		if len(pk) == 0 {
			return nil, fmt.Errorf("mode %s needs key columns: set key = [...] or give table %q a primary key", s.Tbl.Mode, s.Tbl.Name)
		}
		s.Tbl.Keys = pk
	}
	if err := s.Tbl.CheckKeys(); err != nil {
		return nil, err
	}
	if s.Tbl.Mode == OpUpsert && !slices.Contains(uniques, KeyList(s.Tbl.Keys)) {
		return nil, fmt.Errorf("mode upsert needs a primary key or unique index on exactly the key columns (%s) of table %q",
			strings.Join(s.Tbl.Keys, ", "), s.Tbl.Name)
	}
	if s.Tbl.RType != nil {
		if err := cat.CheckType(ctx); err != nil {
			return nil, err
		}
	}
	why, err := cat.Bufferable(ctx, uniques)
	if err != nil {
		return nil, err
	}
	s.Coalesce = why == ""
	if !s.Coalesce {
		s.Log.Info(s.System+": rows are sent at the end of every Write", "table", s.Tbl.Name, "because", why)
	}
	if !s.Exactly {
		return nil, nil
	}
	return cat.Held(ctx)
}

// UniquesBar tells why the table's unique indexes (as [Catalog.Keys]
// returns them) keep rows of several Writes from sharing a statement, or
// "" if they do not: only the key's own index may hold rows of an upsert
// or a delete together.
func (t *Table[C]) UniquesBar(uniques []string) string {
	for _, u := range uniques {
		if t.Mode == OpInsert {
			return "unique indexes in insert mode"
		}
		if u != KeyList(t.Keys) {
			return "unique indexes other than the key"
		}
	}
	return ""
}

// Ptrs returns pointers to the elements of s.
func Ptrs[T any](s []T) []*T {
	out := make([]*T, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}
