package cluster

import (
	"fmt"
	"reflect"
	"testing"
)

func ids(n int) []string {
	var out []string
	for i := range n {
		out = append(out, InstanceID(fmt.Sprintf("p%02d", i), 0))
	}
	return out
}

// counts returns how many instances each member is assigned and checks
// that no instance is given twice or given while it is being revoked.
func check(t *testing.T, d decision, instances []string) map[string]int {
	t.Helper()
	seen := map[string]string{}
	out := map[string]int{}
	for m, ins := range d.Assigned {
		out[m] = len(ins)
		for _, in := range ins {
			if other, ok := seen[in]; ok {
				t.Fatalf("%s assigned to %s and %s", in, other, m)
			}
			seen[in] = m
		}
	}
	for m, ins := range d.Revoked {
		for _, in := range ins {
			if owner, ok := seen[in]; ok && owner != m {
				// Revoked from m while m's duplicate keeps it: allowed
				// only for an instance another member kept.
				continue
			}
			if _, ok := seen[in]; ok {
				t.Fatalf("%s both assigned to and revoked from %s", in, m)
			}
		}
	}
	return out
}

func TestAssignFreshIsBalanced(t *testing.T) {
	ins := ids(7)
	d := assign([]holder{{ID: "a"}, {ID: "b"}, {ID: "c"}}, ins)
	got := check(t, d, ins)
	total := 0
	for m, n := range got {
		if n < 2 || n > 3 {
			t.Errorf("%s has %d instances, want 2 or 3", m, n)
		}
		total += n
	}
	if total != 7 || len(d.Revoked) != 0 {
		t.Fatalf("assigned %d of 7, revoked %v", total, d.Revoked)
	}
}

func TestAssignIsSticky(t *testing.T) {
	ins := ids(6)
	first := assign([]holder{{ID: "a"}, {ID: "b"}, {ID: "c"}}, ins)
	// Member c dies: a and b keep all they ran and share c's two.
	d := assign([]holder{{ID: "a", Running: first.Assigned["a"]}, {ID: "b", Running: first.Assigned["b"]}}, ins)
	check(t, d, ins)
	for _, m := range []string{"a", "b"} {
		kept := map[string]bool{}
		for _, in := range d.Assigned[m] {
			kept[in] = true
		}
		for _, in := range first.Assigned[m] {
			if !kept[in] {
				t.Errorf("%s lost %s, which it ran", m, in)
			}
		}
		if len(d.Assigned[m]) != 3 {
			t.Errorf("%s has %d instances, want 3", m, len(d.Assigned[m]))
		}
	}
	if len(d.Revoked) != 0 {
		t.Errorf("revoked %v", d.Revoked)
	}
}

// A member joining takes work in two generations: first it is revoked
// from the loaded members (who keep running the rest), then, once they
// stopped it, it is assigned to the newcomer.
func TestAssignJoinRevokesThenMoves(t *testing.T) {
	ins := ids(4)
	d1 := assign([]holder{{ID: "a", Running: ins[:2]}, {ID: "b", Running: ins[2:]}, {ID: "c"}}, ins)
	check(t, d1, ins)
	revoked := 0
	for _, r := range d1.Revoked {
		revoked += len(r)
	}
	if revoked != 1 || len(d1.Assigned["c"]) != 0 {
		t.Fatalf("first generation: revoked %v, c got %v; want one revoked, c nothing yet", d1.Revoked, d1.Assigned["c"])
	}
	d2 := assign([]holder{{ID: "a", Running: d1.Assigned["a"]}, {ID: "b", Running: d1.Assigned["b"]}, {ID: "c"}}, ins)
	check(t, d2, ins)
	if len(d2.Revoked) != 0 || len(d2.Assigned["c"]) != 1 {
		t.Fatalf("second generation: revoked %v, c got %v; want c to get the revoked one", d2.Revoked, d2.Assigned["c"])
	}
	if !reflect.DeepEqual(d2.Assigned["a"], d1.Assigned["a"]) || !reflect.DeepEqual(d2.Assigned["b"], d1.Assigned["b"]) {
		t.Errorf("a or b changed in the second generation: %v", d2.Assigned)
	}
}

func TestAssignDropsDuplicatesAndRemoved(t *testing.T) {
	ins := ids(2)
	d := assign([]holder{{ID: "a", Running: []string{ins[0], "gone/0"}}, {ID: "b", Running: []string{ins[0]}}}, ins)
	if !reflect.DeepEqual(d.Revoked["a"], []string{"gone/0"}) || !reflect.DeepEqual(d.Revoked["b"], []string{ins[0]}) {
		t.Fatalf("revoked %v", d.Revoked)
	}
	if !reflect.DeepEqual(d.Assigned["a"], []string{ins[0]}) || !reflect.DeepEqual(d.Assigned["b"], []string{ins[1]}) {
		t.Fatalf("assigned %v", d.Assigned)
	}
}

func TestStatusSupersedes(t *testing.T) {
	running := Status{Worker: "w2", State: StateRunning, Generation: 5}
	for _, c := range []struct {
		st   Status
		want bool
	}{
		{Status{Worker: "w1", State: StateStopped, Generation: 4}, false}, // the old owner stopping late
		{Status{Worker: "w1", State: StateFailed, Generation: 4}, false},  // the old owner fenced
		{Status{Worker: "w2", State: StateFailed, Generation: 5}, true},
		{Status{Worker: "w1", State: StateStarting, Generation: 1}, true}, // the group began again
		{Status{Worker: "w3", State: StateRunning, Generation: 6}, true},
	} {
		if got := supersedes(c.st, running); got != c.want {
			t.Errorf("%+v after %+v: supersedes %v, want %v", c.st, running, got, c.want)
		}
	}
}
