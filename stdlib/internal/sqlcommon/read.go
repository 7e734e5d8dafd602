package sqlcommon

import (
	"context"
	"fmt"
	"time"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/retry"
)

// Poller is the read loop the SQL sources share: it fetches until rows
// come, waits poll after a query that found nothing new, ends a bulk read
// and retries transient failures until retry_timeout.
type Poller struct {
	Poll time.Duration
	Idle bool // the last query found nothing new: wait poll before the next
	Done bool // bulk read finished
}

// Read returns the next rows of fetch. failed sees each failure of fetch
// and returns the error to report, and whether to retry it after a wait of b.
func (p *Poller) Read(ctx context.Context, bulk bool, b *retry.Backoff,
	fetch func(context.Context) ([]stdlib.Record, error), failed func(error) (error, bool)) ([]stdlib.Record, error) {
	for {
		if p.Done {
			return nil, stdlib.ErrEndOfInput
		}
		if p.Idle {
			if err := retry.Sleep(ctx, p.Poll); err != nil {
				return nil, err
			}
		}
		recs, err := fetch(ctx)
		if err == nil {
			b.Reset()
			if len(recs) > 0 {
				p.Idle = false
				return recs, nil
			}
			if bulk {
				p.Done = true
				return nil, stdlib.ErrEndOfInput
			}
			p.Idle = true
			continue
		}
		err, again := failed(err)
		if !again {
			return nil, err
		}
		if werr := b.Wait(ctx, err); werr != nil {
			return nil, werr
		}
	}
}

// Row is what [RowRecord] needs to know of a source.
type Row struct {
	Mode  ReadMode
	Inc   string // the incrementing column
	TS    string // the timestamp column
	ByTS  bool   // the offset is the timestamp column's, else the incrementing one's
	Count int    // columns of the row
	// Column returns the name and the value of column i.
	Column func(i int) (string, any, error)
}

// RowRecord converts a row into a record at pos. The offset is pos.Offset
// (the ordinal) in bulk mode, else read from the mode's column.
func RowRecord(row Row, pos stdlib.Position) (stdlib.Record, error) {
	m := make(map[string]any, row.Count)
	r := stdlib.Record{Partition: -1}
	for i := range row.Count {
		name, nv, err := row.Column(i)
		if err != nil {
			return stdlib.Record{}, fmt.Errorf("column %q: %w", name, err)
		}
		m[name] = nv
		switch {
		case row.Mode == ModeBulk:
		case row.ByTS && name == row.TS:
			t, ok := nv.(time.Time)
			if !ok {
				return stdlib.Record{}, fmt.Errorf("timestamp column %q is null", row.TS)
			}
			pos.Offset = t.UnixMicro()
			r.Time = t
		case !row.ByTS && name == row.Inc:
			n, ok := nv.(int64)
			if !ok {
				return stdlib.Record{}, fmt.Errorf("incrementing column %q is null", row.Inc)
			}
			pos.Offset = n
		}
	}
	r.Value = m
	r.Pos = pos
	return r, nil
}

// Offset is where a source stands: the offset of the last record it
// emitted, if any.
type Offset struct {
	Last    *int64
	HasLast *bool
}

func (o Offset) past(recs []stdlib.Record) {
	if len(recs) > 0 {
		*o.Last, *o.HasLast = recs[len(recs)-1].Pos.Offset, true
	}
}

// Collect converts the rows of a query by record while next reports one,
// then reports rowsErr; at moves past the last record.
func Collect(at Offset, next func() bool, record func() (stdlib.Record, error), rowsErr func() error) ([]stdlib.Record, error) {
	var recs []stdlib.Record
	for next() {
		r, err := record()
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if err := rowsErr(); err != nil {
		return nil, err
	}
	at.past(recs)
	return recs, nil
}

// Bulk converts up to batch rows of a bulk read by record, which takes the
// row's ordinal (counted in ordinal); rows up to the offset at were read
// before and are skipped. When the rows run out, end closes them and
// reports their error, and the next Read ends the input.
func (p *Poller) Bulk(at Offset, batch int, ordinal *int64, next func() bool,
	record func(ordinal int64) (stdlib.Record, error), end func() error) ([]stdlib.Record, error) {
	var recs []stdlib.Record
	for len(recs) < batch && next() {
		*ordinal++
		if *at.HasLast && *ordinal <= *at.Last {
			continue
		}
		r, err := record(*ordinal)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if len(recs) < batch {
		if err := end(); err != nil {
			return nil, err
		}
		p.Done = true
	}
	at.past(recs)
	return recs, nil
}
