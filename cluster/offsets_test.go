package cluster

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"pipe.dev/pipe/exec/state"
	"pipe.dev/pipe/stdlib"
	"pipe.dev/pipe/stdlib/kafka/devbroker"
)

// startDevBroker starts an in-process broker for the test and returns its
// address.
func startDevBroker(t *testing.T) string {
	t.Helper()
	b, err := devbroker.Start(context.Background(), devbroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close) // after the workers' cleanups: they write as they stop
	return b.Addr()
}

func startBroker(t *testing.T) []kgo.Opt {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(startDevBroker(t))}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := createTopics(t.Context(), admin, "capist", -1); err != nil {
		t.Fatal(err)
	}
	return opts
}

func cp(id uint64, off int64) state.Checkpoint {
	return state.Checkpoint{ID: id, Positions: []stdlib.Position{{Source: "in", Partition: "a", Offset: off}}}
}

// TestKafkaState: a checkpoint saved by one owner of an instance is what
// the next owner loads; opening the store as the next owner fences the
// first, whose later saves fail and are never read; instances do not see
// each other's checkpoints; a read-only store fences nobody.
func TestKafkaState(t *testing.T) {
	opts := startBroker(t)
	ctx := context.Background()
	a, err := openKafkaState(ctx, opts, "capist", "p/0", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Load(); err != nil || got != nil {
		t.Fatalf("empty topic: Load = %v, %v", got, err)
	}
	for i := uint64(1); i <= 3; i++ {
		if err := a.Save(cp(i, int64(10*i))); err != nil {
			t.Fatal(err)
		}
	}
	other, err := openKafkaState(ctx, opts, "capist", "q/0", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Save(cp(1, 99)); err != nil {
		t.Fatal(err)
	}
	ro, err := openKafkaState(ctx, opts, "capist", "p/0", false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ro.Load(); err != nil || got == nil || got.ID != 3 || got.Positions[0].Offset != 30 {
		t.Fatalf("read only Load = %+v, %v; want checkpoint 3", got, err)
	}
	if err := a.Save(cp(4, 40)); err != nil {
		t.Fatalf("a read-only store fenced the owner: %v", err)
	}

	// The owner dies in the middle of a save: its transaction stays open.
	data, _ := state.Encode(cp(5, 50))
	if err := a.w.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := a.w.ProduceSync(ctx, &kgo.Record{Topic: a.topic, Key: []byte(a.key), Value: data}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	b, err := openKafkaState(ctx, opts, "capist", "p/0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.w.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("the fenced owner committed its checkpoint")
	}
	if err := a.Save(cp(7, 70)); err == nil {
		t.Fatal("the fenced owner saved a checkpoint")
	}
	a.Close()
	got, err := b.Load()
	if err != nil || got == nil || got.ID != 4 || got.Positions[0].Offset != 40 {
		t.Fatalf("new owner loads %+v, %v; want checkpoint 4", got, err)
	}
	if err := b.Save(cp(6, 60)); err != nil {
		t.Fatal(err)
	}
	if got, err := ro.Load(); err != nil || got.ID != 6 {
		t.Fatalf("after the new owner's save: %+v, %v", got, err)
	}
	if got, err := other.Load(); err != nil || got.ID != 1 || got.Positions[0].Offset != 99 {
		t.Fatalf("the other instance's checkpoint: %+v, %v", got, err)
	}
	other.Close()
}

// BenchmarkStateSave compares saving a checkpoint of 16 positions in the
// offsets topic (a transaction on the development broker) with the local
// store (a synced file).
func BenchmarkStateSave(b *testing.B) {
	pos := make([]stdlib.Position, 16)
	for i := range pos {
		pos[i] = stdlib.Position{Source: "in", Partition: fmt.Sprint(i), Offset: int64(i)}
	}
	b.Run("kafka", func(b *testing.B) {
		br, err := devbroker.Start(b.Context(), devbroker.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer br.Close()
		opts := []kgo.Opt{kgo.SeedBrokers(br.Addr())}
		admin, _ := kgo.NewClient(opts...)
		if err := createTopics(b.Context(), admin, "capibench", -1); err != nil {
			b.Fatal(err)
		}
		admin.Close()
		s, err := openKafkaState(b.Context(), opts, "capibench", "p/0", true)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		saveLoop(b, s, pos)
	})
	b.Run("local", func(b *testing.B) {
		s, err := state.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		saveLoop(b, s, pos)
	})
}

func saveLoop(b *testing.B, s state.Backend, pos []stdlib.Position) {
	for i := 0; b.Loop(); i++ {
		if err := s.Save(state.Checkpoint{ID: uint64(i), Positions: pos}); err != nil {
			b.Fatal(err)
		}
	}
}
