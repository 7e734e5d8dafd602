package stdlib

import "testing"

func TestRecycler(t *testing.T) {
	var none *Recycler
	if b := none.Batch(3); len(b) != 3 {
		t.Fatalf("nil recycler: batch of %d", len(b))
	}
	none.PutBatch(make([]Record, 4)) // no-op

	r := NewRecycler(4)
	b := r.Batch(3)
	if len(b) != 3 || cap(b) != 4 {
		t.Fatalf("batch len %d cap %d, want 3 and 4", len(b), cap(b))
	}
	if big := r.Batch(5); len(big) != 5 {
		t.Fatalf("oversized batch of %d", len(big))
	}
	for i := range b {
		b[i] = Record{Value: i, Pos: Position{Offset: int64(i)}}
	}
	r.PutBatch(b[:1]) // the whole capacity is zeroed, not just b's length
	r.PutBatch(make([]Record, 2, 3))
	for range 100 { // sync.Pool may drop what was put: only check what comes back
		c := r.Batch(4)
		if len(c) != 4 || cap(c) != 4 {
			t.Fatalf("batch len %d cap %d", len(c), cap(c))
		}
		for i := range c {
			if c[i].Value != nil || c[i].Pos != (Position{}) {
				t.Fatalf("recycled record %d not zeroed: %+v", i, c[i])
			}
		}
	}
}
