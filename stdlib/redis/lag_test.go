package redis

import (
	"context"
	"testing"

	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/stdlibtest"
)

// TestSourceLag: the lag of a stream is the entries the group was not
// handed yet; after Close the source answers its last figures.
func TestSourceLag(t *testing.T) {
	cl := newClient(t)
	stream := uniq("lag")
	t.Cleanup(func() { cl.Del(context.Background(), stream) })
	addEntries(t, cl, stream, 0, 50)
	s := openSource(t, config(t, SourceSpec, "in", map[string]any{"stream": stream, "group": "g", "count": int64(20)}), nil)
	want := func(behind int64) {
		t.Helper()
		stdlibtest.WantLag(t, s, stdlib.Lag{Partition: stream, Behind: behind, Unit: "records"})
	}
	want(50)
	n := 0
	for n < 20 {
		recs, err := s.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		n += len(recs)
	}
	want(int64(50 - n))
	s.Close(t.Context())
	addEntries(t, cl, stream, 50, 60)
	want(int64(50 - n))
}
