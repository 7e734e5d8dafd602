package stdlib

import "sync"

// Recycler passes batches the executor is done with back to sources, which
// fill them again instead of allocating new ones: a batch of a thousand
// records is some 200 KB to allocate and zero, and its garbage a good part
// of the collector's work. A batch is recycled once nothing refers to it:
// after a [Spec.Releases] sink wrote it, or after its records were copied
// on. The record values it held are not recycled.
//
// A nil *Recycler allocates every batch. A Recycler is safe for concurrent
// use.
type Recycler struct {
	size    int // capacity of the batches recycled
	batches sync.Pool
}

// NewRecycler returns a recycler of batches of capacity size.
func NewRecycler(size int) *Recycler {
	return &Recycler{size: max(size, 1)}
}

// Batch returns a batch of n zero records: a recycled one when n fits in
// the recycler's capacity.
func (r *Recycler) Batch(n int) []Record {
	if r == nil || n > r.size {
		return make([]Record, n)
	}
	if v := r.batches.Get(); v != nil {
		return (*(v.(*[]Record)))[:n]
	}
	return make([]Record, n, r.size)
}

// PutBatch keeps b for reuse; the caller guarantees that nothing refers to
// b any more. Only batches of the recycler's capacity are kept.
func (r *Recycler) PutBatch(b []Record) {
	if r == nil || cap(b) != r.size {
		return
	}
	clear(b[:cap(b)])
	b = b[:0]
	r.batches.Put(&b)
}
